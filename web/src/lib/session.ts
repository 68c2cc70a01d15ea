// The session's life as the page sees it: whether a cookie may be there, signing in, and every
// way it ends, each said on the login screen: a logout here (nothing to say), a deletion here
// (what was erased), or the server closing it (4401: another device logged it out, revoked it,
// changed the phrase or deleted the account). Plain TypeScript, tested with fakes.
import { ApiError, explain, type User } from "./api";
import type { Store } from "./store";

// Not a secret, only a hint that a session cookie may exist: without it the first
// screen is the login form at once, with no profile request that can only answer 401.
const SESSION_HINT = "secure-link:session";

export const SESSION_ENDED = "Your session has ended: it was logged out or revoked, or your phrase was changed "
  + "or your account deleted, on this device or another. Log in again to go on.";

/** What the session needs of the server (lib/api.ts's calls; the tests give fakes). */
export interface SessionCalls {
  profile(): Promise<{ user: User }>;
  logout(): Promise<unknown>;
  deleteAccount(phrase: string): Promise<{ deleted: { messages: number; files: number } }>;
}

function counted(count: number, what: string): string {
  return `${count.toLocaleString("en")} ${what}${count === 1 ? "" : "s"}`;
}

export class Session {
  private leaving = false;  // a logout or deletion from this page is under way: its own 4401 is expected
  private endedMeanwhile = false;

  constructor(private readonly store: Store, private readonly storage: Pick<Storage, "getItem" | "setItem" | "removeItem">,
              private readonly calls: SessionCalls) {}

  /** Whether a session cookie may exist; the profile then says whose. A 401 means it has ended. */
  check = async (): Promise<void> => {
    if (!this.storage.getItem(SESSION_HINT)) return;
    try {
      this.store.dispatch({ type: "me", user: (await this.calls.profile()).user });
    } catch (error) {
      this.storage.removeItem(SESSION_HINT);
      if (error instanceof ApiError && error.status === 401) this.store.dispatch({ type: "me", user: null, ended: SESSION_ENDED });
    }
  };

  signIn = (user: User): void => {
    this.storage.setItem(SESSION_HINT, "1");
    this.store.dispatch({ type: "me", user });
  };

  /** The server closed the session (4401). A logout or deletion from this page expects it and
   *  ends the session itself, saying why; should that then fail, the session has still ended. */
  closedByServer = (): void => {
    if (this.leaving) this.endedMeanwhile = true;
    else this.end(SESSION_ENDED);
  };

  /** Log out, which erases both sides of every conversation. Only the server can do it: when it
   *  cannot be reached, nothing is erased, and the person stays logged in and is told so. */
  logOut = async (): Promise<void> => {
    try {
      await this.asLeaving(this.calls.logout);
    } catch (error) {
      if (error instanceof ApiError && error.status === 0) {
        throw new Error("You are offline, so nothing was erased and you are still logged in. "
                        + "Log out again once you are back online.");
      }
      throw new Error(explain(error, "Nothing was erased and you are still logged in"));
    }
    this.end();
  };

  /** Erase the account and everything of it; the login screen then says what went. A refusal
   *  (a wrong phrase, offline) is thrown as the server gave it, for the dialog to show. */
  deleteAccount = async (phrase: string): Promise<void> => {
    const name = this.store.getState().me?.username ?? "";
    const { deleted } = await this.asLeaving(() => this.calls.deleteAccount(phrase));
    this.end(`Your account “${name}” was deleted, and with it ${counted(deleted.messages, "message")} and `
             + `${counted(deleted.files, "file")}, for you and for the people you talked to.`);
  };

  private end(why?: string): void {
    this.storage.removeItem(SESSION_HINT);
    this.store.dispatch({ type: "me", user: null, ended: why });
  }

  private async asLeaving<T>(work: () => Promise<T>): Promise<T> {
    this.leaving = true;
    this.endedMeanwhile = false;
    try {
      return await work();
    } catch (error) {
      if (this.endedMeanwhile) this.end(SESSION_ENDED);
      throw error;
    } finally {
      this.leaving = false;
    }
  }
}

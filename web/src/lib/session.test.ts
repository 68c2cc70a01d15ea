// How a session ends, and what the login screen then says (v1.2: a phrase changed or an account
// deleted elsewhere closes this page's socket with 4401).
import { describe, expect, it } from "vitest";
import { ApiError, type User } from "./api";
import { Session, SESSION_ENDED, type SessionCalls } from "./session";
import { Store } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };

class MemoryStorage {
  items = new Map<string, string>();
  getItem(key: string) { return this.items.get(key) ?? null; }
  setItem(key: string, value: string) { this.items.set(key, value); }
  removeItem(key: string) { this.items.delete(key); }
}

/** A call the test answers by hand, to make the server's 4401 arrive while it is under way. */
function pending<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => { resolve = yes; reject = no; });
  return { promise, resolve, reject };
}

function setup(calls: Partial<SessionCalls> = {}) {
  const store = new Store();
  const storage = new MemoryStorage();
  const session = new Session(store, storage, {
    profile: () => Promise.resolve({ user: alice }), logout: () => Promise.resolve({}),
    deleteAccount: () => Promise.resolve({ deleted: { messages: 0, files: 0 } }), ...calls,
  });
  session.signIn(alice);
  return { store, storage, session, state: store.getState };
}

describe("Session", () => {
  it("goes to the login screen saying the session ended when the server closes it", () => {
    const { session, state, storage } = setup();
    session.closedByServer();
    expect(state().me).toBeNull();
    expect(state().ended).toBe(SESSION_ENDED);
    expect(storage.items.size).toBe(0);
  });

  it("says nothing of the kind for its own logout, though the server closes the socket before answering", async () => {
    const answer = pending<unknown>();
    const { session, state } = setup({ logout: () => answer.promise });
    const loggingOut = session.logOut();
    session.closedByServer();
    expect(state().me).toEqual(alice);  // not before the answer
    answer.resolve({});
    await loggingOut;
    expect(state().me).toBeNull();
    expect(state().ended).toBeNull();
  });

  it("says what a deletion erased, once the server has answered", async () => {
    const answer = pending<{ deleted: { messages: number; files: number } }>();
    const { session, state } = setup({ deleteAccount: () => answer.promise });
    const deleting = session.deleteAccount("the phrase");
    session.closedByServer();
    answer.resolve({ deleted: { messages: 1204, files: 1 } });
    await deleting;
    expect(state().ended).toBe("Your account “alice” was deleted, and with it 1,204 messages and 1 file, "
                               + "for you and for the people you talked to.");
  });

  it("keeps the session after a refused deletion, unless the server closed it meanwhile", async () => {
    const wrong = new ApiError(401, "invalid_credentials", "Wrong phrase.");
    const { session, state } = setup({ deleteAccount: () => Promise.reject(wrong) });
    await expect(session.deleteAccount("not it")).rejects.toBe(wrong);
    expect(state().me).toEqual(alice);

    const answer = pending<never>();
    const other = setup({ deleteAccount: () => answer.promise });
    const deleting = other.session.deleteAccount("the phrase");
    other.session.closedByServer();  // another device deleted it first
    answer.reject(new ApiError(0, "network", "The server could not be reached."));
    await expect(deleting).rejects.toBeInstanceOf(ApiError);
    expect(other.state().me).toBeNull();
    expect(other.state().ended).toBe(SESSION_ENDED);
  });

  it("on a reload, says the session ended only when the server answers 401", async () => {
    const ended = setup({ profile: () => Promise.reject(new ApiError(401, "unauthenticated", "Log in.")) });
    ended.store.dispatch({ type: "me", user: null });
    ended.storage.setItem("secure-link:session", "1");
    await ended.session.check();
    expect(ended.state().ended).toBe(SESSION_ENDED);

    const offline = setup({ profile: () => Promise.reject(new ApiError(0, "network", "The server could not be reached.")) });
    offline.store.dispatch({ type: "me", user: null });
    offline.storage.setItem("secure-link:session", "1");
    await offline.session.check();
    expect(offline.state().ended).toBeNull();
  });

  it("clears what the login screen said once someone logs in", () => {
    const { session, state } = setup();
    session.closedByServer();
    session.signIn(alice);
    expect(state().ended).toBeNull();
  });
});

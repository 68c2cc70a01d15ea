// Blocking as the page does it (v1.2): the block list loaded when it may have changed elsewhere
// (start, reconnect, the tab shown again), a block or unblock applied as the server answers, and
// a `blocked` refusal read against a fresh list to tell whose block it is. Plain TypeScript,
// tested with fakes; lib/blocks.ts holds the state it changes.
import { ApiError, explain, type Block } from "./api";
import type { Store } from "./store";

/** What blocking needs of the server (lib/api.ts's calls; the tests give fakes). */
export interface BlockingCalls {
  blocks(): Promise<{ blocks: Block[] }>;
  block(username: string): Promise<Block>;
  unblock(username: string): Promise<unknown>;
}

export class Blocking {
  constructor(private readonly store: Store, private readonly calls: BlockingCalls) {}

  load = async (): Promise<void> => {
    try {
      this.store.dispatch({ type: "blocks", list: (await this.calls.blocks()).blocks });
    } catch (error) {
      this.store.dispatch({ type: "blocksFailed", error: explain(error, "The people you blocked could not be loaded") });
    }
  };

  block = async (peer: string): Promise<void> => {
    const { since } = await this.calls.block(peer);
    this.store.dispatch({ type: "block", with: peer, since });
  };

  unblock = async (peer: string): Promise<void> => {
    await this.calls.unblock(peer);
    this.store.dispatch({ type: "unblock", with: peer });
  };

  /** Something to `peer` was refused as `blocked`: the list, asked again (a block may have been
   *  made in another tab), says whether the block is this user's; if not, it is the peer's. */
  refused = async (peer: string): Promise<void> => {
    await this.load();
    this.store.dispatch({ type: "refusedBlocked", with: peer });
  };

  /** A REST answer about `peer`, passed through; a `blocked` refusal is read as `refused` is. */
  guard = async <T>(peer: string, answer: Promise<T>): Promise<T> => {
    try {
      return await answer;
    } catch (error) {
      if (error instanceof ApiError && error.code === "blocked") void this.refused(peer);
      throw error;
    }
  };

  /** Load the list whenever the tab is shown again: a block made in another tab shows here. */
  reloadWhenShown(): () => void {
    let visible = this.store.getState().visible;
    return this.store.subscribe(() => {
      const now = this.store.getState().visible;
      if (now && !visible) void this.load();
      visible = now;
    });
  }
}

// Blocking as the page does it: whose block a refusal is, read against a fresh list.
import { describe, expect, it } from "vitest";
import { ApiError, type Block, type User } from "./api";
import { Blocking, type BlockingCalls } from "./blocking";
import { blockOf } from "./blocks";
import { Store } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };
const SINCE = "2026-02-01T10:00:00.000Z";

/** The server's list as it stands, changed by the test as another tab would change it. */
function setup(listed: Block[] = []) {
  const store = new Store();
  store.dispatch({ type: "me", user: alice });
  const server = { listed, asked: 0 };
  const calls: BlockingCalls = {
    blocks: async () => { server.asked += 1; return { blocks: server.listed }; },
    block: async (username) => ({ username, since: SINCE }),
    unblock: async () => ({}),
  };
  return { store, server, blocking: new Blocking(store, calls), state: store.getState };
}

describe("Blocking", () => {
  it("reads a refusal as this user's block when another tab made one meanwhile", async () => {
    const { blocking, server, state } = setup();
    await blocking.load();
    server.listed = [{ username: "bob", since: SINCE }];  // blocked in another tab
    await blocking.refused("bob");
    expect(blockOf(state().blocks, "bob")).toBe("mine");
  });

  it("reads a refusal as the peer's block when the list has none", async () => {
    const { blocking, state } = setup();
    await blocking.refused("bob");
    expect(blockOf(state().blocks, "bob")).toBe("theirs");
  });

  it("passes a REST refusal on, and reads it when it is `blocked`", async () => {
    const { blocking, server, state } = setup();
    const refusal = new ApiError(403, "blocked", "One of you has blocked the other.");
    await expect(blocking.guard("bob", Promise.reject(refusal))).rejects.toBe(refusal);
    await expect.poll(() => blockOf(state().blocks, "bob")).toBe("theirs");
    const other = new ApiError(404, "not_found", "No such message.");
    await expect(blocking.guard("carol", Promise.reject(other))).rejects.toBe(other);
    expect(server.asked).toBe(1);  // only the `blocked` refusal asked for the list
  });

  it("loads the list again when the tab is shown again, not while it stays shown", async () => {
    const { blocking, server, store } = setup();
    const stop = blocking.reloadWhenShown();
    store.dispatch({ type: "draft", with: "bob", text: "x" });
    expect(server.asked).toBe(0);
    store.dispatch({ type: "visible", visible: false });
    store.dispatch({ type: "visible", visible: true });
    expect(server.asked).toBe(1);
    stop();
    store.dispatch({ type: "visible", visible: false });
    store.dispatch({ type: "visible", visible: true });
    expect(server.asked).toBe(1);
  });

  it("says the list failed to load, for the account to offer Retry", async () => {
    const { store, state } = setup();
    const failing = new Blocking(store, { blocks: () => Promise.reject(new ApiError(0, "network", "The server could not be reached.")),
                                          block: async () => ({ username: "", since: "" }), unblock: async () => ({}) });
    await failing.load();
    expect(state().blocks.load).toEqual({ error: "The people you blocked could not be loaded: the server could not be reached. "
                                                + "Check your connection, then try again." });
  });
});

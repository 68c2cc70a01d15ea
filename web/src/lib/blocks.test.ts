// Blocks (v1.2): the list decides what this user blocks; a refusal, what the peer does; anything
// that comes from the peer shows no block stands.
import { describe, expect, it } from "vitest";
import type { Message, User } from "./api";
import { blockedPeople, blockOf, refusalFor } from "./blocks";
import { initialState, reduce, type Action, type State } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };

function message(id: number, from = "bob", to = "alice"): Message {
  return { id, from, to, message: `m${id}`, attachment: null, client_id: null, sent_at: "2026-01-01T00:00:00Z", expires_at: null };
}

function run(...actions: Action[]): State {
  return actions.reduce(reduce, reduce(initialState, { type: "me", user: alice }));
}

const SINCE = "2026-02-01T10:00:00.000Z";

describe("blocks", () => {
  it("takes the block list as what this user blocks, once loaded", () => {
    expect(run().blocks.load).toBe("loading");
    const state = run({ type: "blocks", list: [{ username: "bob", since: SINCE }] });
    expect(state.blocks.load).toBe("ready");
    expect(blockOf(state.blocks, "bob")).toBe("mine");
    expect(blockOf(state.blocks, "carol")).toBeNull();
    expect(run({ type: "blocksFailed", error: "offline" }).blocks.load).toEqual({ error: "offline" });
  });

  it("blocks and unblocks as the server answers", () => {
    const blocked = run({ type: "block", with: "bob", since: SINCE });
    expect(blockOf(blocked.blocks, "bob")).toBe("mine");
    expect(reduce(blocked, { type: "block", with: "bob", since: SINCE })).toBe(blocked);  // again: the same
    expect(blockOf(reduce(blocked, { type: "unblock", with: "bob" }).blocks, "bob")).toBeNull();
  });

  it("reads a refusal as the peer's block only when the list has no block of ours", () => {
    const ours = run({ type: "blocks", list: [{ username: "bob", since: SINCE }] }, { type: "refusedBlocked", with: "bob" });
    expect(blockOf(ours.blocks, "bob")).toBe("mine");
    expect(ours.blocks.theirs).toEqual({});
    const theirs = run({ type: "blocks", list: [] }, { type: "refusedBlocked", with: "bob" });
    expect(blockOf(theirs.blocks, "bob")).toBe("theirs");
    const both = reduce(theirs, { type: "block", with: "bob", since: SINCE });
    expect(blockOf(both.blocks, "bob")).toBe("mine");  // ours to lift first
    expect(blockOf(reduce(both, { type: "unblock", with: "bob" }).blocks, "bob")).toBe("theirs");
  });

  it("forgets the peer's block once anything comes from them: the lift sends their presence, online or not", () => {
    const refused = run({ type: "presence", user: "bob", online: false },  // the new block's own presence
                        { type: "blocks", list: [] }, { type: "refusedBlocked", with: "bob" });
    expect(blockOf(refused.blocks, "bob")).toBe("theirs");
    const theirs = reduce(refused, { type: "message", message: message(4, "alice", "bob") });  // our own, from elsewhere
    expect(blockOf(theirs.blocks, "bob")).toBe("theirs");
    expect(blockOf(reduce(theirs, { type: "presence", user: "carol", online: true }).blocks, "bob")).toBe("theirs");
    const lifted: Action[] = [
      { type: "message", message: message(5) },
      { type: "typing", from: "bob", until: 1 },
      { type: "read", by: "bob", up_to: 1 },
      { type: "presence", user: "bob", online: true },
      { type: "presence", user: "bob", online: false },  // lifted while they are away
    ];
    for (const action of lifted) expect(blockOf(reduce(theirs, action).blocks, "bob")).toBeNull();
  });

  it("forgets every block on logout", () => {
    const state = run({ type: "blocks", list: [{ username: "bob", since: SINCE }] }, { type: "me", user: null });
    expect(blockOf(state.blocks, "bob")).toBeNull();
  });

  it("lists the people blocked, the latest first", () => {
    const state = run({ type: "blocks", list: [{ username: "bob", since: SINCE }, { username: "carol", since: "2026-03-01T00:00:00Z" }] });
    expect(blockedPeople(state.blocks).map((b) => b.username)).toEqual(["carol", "bob"]);
  });

  it("says why the composer is disabled, and whose block it is", () => {
    expect(refusalFor("mine", "bob")).toBe("You blocked bob, so neither of you can send messages. Unblock bob to write again.");
    expect(refusalFor("theirs", "bob")).toBe("bob has blocked you, so you cannot send them messages.");
    expect(refusalFor(null, "bob")).toBeNull();
  });
});

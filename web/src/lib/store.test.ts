import { describe, expect, it } from "vitest";
import type { Message, User } from "./api";
import { initialState, reduce, type Action, type State } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };

function message(id: number, from = "bob", to = "alice", clientId: string | null = null): Message {
  return { id, from, to, message: `m${id}`, attachment: null, client_id: clientId, sent_at: "2026-01-01T00:00:00Z" };
}

function run(...actions: Action[]): State {
  return actions.reduce(reduce, reduce(initialState, { type: "me", user: alice }));
}

const ids = (state: State, peer = "bob") => state.threads[peer].entries.map((e) => e.id);

describe("store", () => {
  it("merges by id: live, synced and paged copies of a message show once, in id order", () => {
    const state = run(
      { type: "message", message: message(5) },
      { type: "message", message: message(3) },
      { type: "message", message: message(5) },
      { type: "history", with: "bob", messages: [message(1), message(3), message(4)], hasMore: true, older: true },
    );
    expect(ids(state)).toEqual([1, 3, 4, 5]);
    expect(state.threads.bob.hasMore).toBe(true);
    expect(state.lastId).toBe(5);
  });

  it("shows a send as pending, then acked in its place by id, once", () => {
    const pending = run({ type: "pending", entry: { id: null, client_id: "c1", from: "alice", to: "bob",
      message: "hi", attachment: null, sent_at: "" } });
    expect(ids(pending)).toEqual([null]);
    const acked = [
      { type: "message", message: message(2) } as Action,
      { type: "ack", client_id: "c1", message: message(7, "alice", "bob", "c1") } as Action,
      { type: "message", message: message(7, "alice", "bob", "c1") } as Action,  // replayed by sync too
    ].reduce(reduce, pending);
    expect(ids(acked)).toEqual([2, 7]);
    expect(acked.threads.bob.entries[1].client_id).toBe("c1");
  });

  it("keeps pending sends after acked ones, and marks a refused one failed", () => {
    const state = run(
      { type: "pending", entry: { id: null, client_id: "c1", from: "alice", to: "bob", message: "x", attachment: null, sent_at: "" } },
      { type: "message", message: message(9) },
      { type: "failed", client_id: "c1", reason: "too long" },
    );
    expect(ids(state)).toEqual([9, null]);
    expect(state.threads.bob.entries[1].failed).toBe("too long");
  });

  it("counts unread only for new messages from a peer whose conversation is not open", () => {
    let state = run({ type: "message", message: message(1) }, { type: "message", message: message(1) });
    expect(state.conversations.bob.unread).toBe(1);
    state = [{ type: "open", with: "bob" } as Action, { type: "message", message: message(2) } as Action].reduce(reduce, state);
    expect(state.conversations.bob.unread).toBe(0);
    expect(state.conversations.bob.last?.id).toBe(2);
  });

  it("empties a conversation on `cleared` and says who cleared it", () => {
    const state = run(
      { type: "message", message: message(1) },
      { type: "read", by: "bob", up_to: 1 },
      { type: "cleared", with: "bob" },
    );
    expect(ids(state)).toEqual([]);
    expect(state.conversations.bob).toBeUndefined();
    expect(state.threads.bob.clearedBy).toBe("bob");
    expect(state.threads.bob.peerReadUpTo).toBe(0);
  });

  it("takes a read receipt or typing as a sign the peer is online", () => {
    const state = run({ type: "presence", user: "bob", online: false }, { type: "typing", from: "bob", until: 5 });
    expect(state.presence.bob).toBe(true);
    expect(run({ type: "read", by: "carol", up_to: 3 }).presence.carol).toBe(true);
    expect(run({ type: "typing", from: "bob", until: 5 }, { type: "connection", status: "offline" }).presence).toEqual({});
  });

  it("removes `deleted` messages by id", () => {
    const state = run(
      { type: "message", message: message(1) },
      { type: "message", message: message(2) },
      { type: "deleted", with: "bob", ids: [1] },
    );
    expect(ids(state)).toEqual([2]);
  });

  it("forgets everything on logout but the connection status", () => {
    const state = run({ type: "message", message: message(1) }, { type: "connection", status: "online" },
                      { type: "me", user: null });
    expect(state.threads).toEqual({});
    expect(state.me).toBeNull();
    expect(state.connection).toBe("online");
  });

  it("on resync drops what the server delivered, keeps pending sends, and reloads", () => {
    const state = run(
      { type: "history", with: "bob", messages: [message(1), message(2)], hasMore: false, older: false },
      { type: "pending", entry: { id: null, client_id: "c9", from: "alice", to: "bob", message: "wait",
        attachment: null, sent_at: "" } },
      { type: "resync" },
    );
    expect(ids(state)).toEqual([null]);
    expect(state.threads.bob.loaded).toBe(false);
    const reloaded = reduce(state, { type: "history", with: "bob", messages: [message(2)], hasMore: false, older: false });
    expect(ids(reloaded)).toEqual([2, null]);  // message 1 was cleared meanwhile: it stays gone
  });
});

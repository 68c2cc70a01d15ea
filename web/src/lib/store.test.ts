import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Conversation, Message, User } from "./api";
import { Clock } from "./clock";
import { expireOnTick, hasExpiring, initialState, reduce, Store, type Action, type State } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };

function message(id: number, from = "bob", to = "alice", clientId: string | null = null,
                 expiresAt: string | null = null): Message {
  return { id, from, to, message: `m${id}`, attachment: null, client_id: clientId, sent_at: "2026-01-01T00:00:00Z",
           expires_at: expiresAt };
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
      message: "hi", attachment: null, sent_at: "", expires_at: null } });
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
      { type: "pending", entry: { id: null, client_id: "c1", from: "alice", to: "bob", message: "x", attachment: null, sent_at: "", expires_at: null } },
      { type: "message", message: message(9) },
      { type: "failed", client_id: "c1", reason: "too long" },
    );
    expect(ids(state)).toEqual([9, null]);
    expect(state.threads.bob.entries[1].failed).toBe("too long");
  });

  it("counts unread only for new messages from a peer whose conversation is not shown", () => {
    let state = run({ type: "message", message: message(1) }, { type: "message", message: message(1) });
    expect(state.conversations.bob.unread).toBe(1);
    state = [
      { type: "open", with: "bob" } as Action,
      { type: "history", with: "bob", messages: [message(1)], hasMore: false, older: false } as Action,
      { type: "message", message: message(2) } as Action,
    ].reduce(reduce, state);
    expect(state.conversations.bob.unread).toBe(0);
    expect(state.conversations.bob.last?.id).toBe(2);
  });

  it("does not count again a replayed message the conversation list has counted", () => {
    const listed = reduce(run(), { type: "conversations", list: [{ ...conversation(message(60)), unread: 60 }] });
    const replayed = [1, 30, 60].reduce((state, id) => reduce(state, { type: "message", message: message(id) }), listed);
    expect(replayed.conversations.bob.unread).toBe(60);
    expect(reduce(replayed, { type: "message", message: message(61) }).conversations.bob.unread).toBe(61);
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

  it("on resync drops what the server delivered, keeps pending sends and timers, and reloads", () => {
    const state = run(
      { type: "timer", with: "bob", seconds: 60, by: "bob", at: "2026-01-01T00:00:00Z" },
      { type: "history", with: "bob", messages: [message(1), message(2)], hasMore: false, older: false },
      { type: "pending", entry: { id: null, client_id: "c9", from: "alice", to: "bob", message: "wait",
        attachment: null, sent_at: "", expires_at: null } },
      { type: "resync" },
    );
    expect(ids(state)).toEqual([null]);
    expect(state.threads.bob.loaded).toBe(false);
    expect(state.timers.bob.seconds).toBe(60);
    const reloaded = reduce(state, { type: "history", with: "bob", messages: [message(2)], hasMore: false, older: false });
    expect(ids(reloaded)).toEqual([2, null]);  // message 1 was cleared meanwhile: it stays gone
  });
});

const bob: User = { ...alice, id: 2, username: "bob" };
const T0 = Date.parse("2026-01-01T00:00:00Z");
const at = (ms: number) => new Date(T0 + ms).toISOString();

function conversation(last: Message, timer = 0): Conversation {
  return { with: bob, last_message: last, unread: 0, timer };
}

describe("timers", () => {
  it("keeps a `timer` frame's length, who set it and when", () => {
    const state = run({ type: "timer", with: "bob", seconds: 300, by: "bob", at: at(0) });
    expect(state.timers.bob).toEqual({ seconds: 300, setBy: "bob", setAt: at(0) });
  });

  it("takes lengths from the conversation list, keeping who set one while its length is unchanged", () => {
    const set = run({ type: "timer", with: "bob", seconds: 300, by: "alice", at: at(0) });
    const same = reduce(set, { type: "conversations", list: [conversation(message(1), 300)] });
    expect(same.timers.bob).toEqual({ seconds: 300, setBy: "alice", setAt: at(0) });
    const changed = reduce(set, { type: "conversations", list: [conversation(message(1), 30)] });
    expect(changed.timers.bob).toEqual({ seconds: 30, setBy: null, setAt: null });
  });

  it("turns a conversation's timer off when a logout clears it", () => {
    const state = run({ type: "timer", with: "bob", seconds: 60, by: "bob", at: at(0) }, { type: "cleared", with: "bob" });
    expect(state.timers.bob).toEqual({ seconds: 0, setBy: null, setAt: null });
  });
});

describe("deleted", () => {
  it("removes the messages of a `deleted` frame for both kinds of reason, keeps pending sends", () => {
    const state = run(
      { type: "history", with: "bob", messages: [message(1), message(2), message(3, "alice", "bob")], hasMore: false, older: false },
      { type: "pending", entry: { id: null, client_id: "c1", from: "alice", to: "bob", message: "x", attachment: null,
                                  sent_at: "", expires_at: null } },
      { type: "deleted", with: "bob", ids: [1, 3] },
    );
    expect(ids(state)).toEqual([2, null]);
  });

  it("shows the newest remaining message as the preview when the previewed one is deleted", () => {
    const listed = run({ type: "conversations", list: [conversation(message(3))] },
                       { type: "history", with: "bob", messages: [message(2), message(3)], hasMore: false, older: false });
    expect(reduce(listed, { type: "deleted", with: "bob", ids: [3] }).conversations.bob.last?.id).toBe(2);
    const unloaded = run({ type: "conversations", list: [conversation(message(3))] }, { type: "deleted", with: "bob", ids: [3] });
    expect(unloaded.conversations.bob.last).toBeNull();
  });

  it("changes nothing for ids it does not show", () => {
    const state = run({ type: "message", message: message(1) });
    expect(reduce(state, { type: "deleted", with: "bob", ids: [7] })).toBe(state);
    expect(reduce(state, { type: "deleted", with: "carol", ids: [1] })).toBe(state);
  });
});

describe("expiry", () => {
  beforeEach(() => { vi.useFakeTimers(); vi.setSystemTime(T0); });
  afterEach(() => vi.useRealTimers());

  const storeWith = (...actions: Action[]) => new Store(run(...actions));

  it("drops a message on the first tick at its expires_at, without waiting for `deleted`", () => {
    const store = storeWith(
      { type: "conversations", list: [conversation(message(2, "bob", "alice", null, at(2_000)))] },
      { type: "history", with: "bob", messages: [message(1), message(2, "bob", "alice", null, at(2_000))], hasMore: false, older: false },
    );
    const clock = new Clock(1000);
    const stop = expireOnTick(clock, store);
    vi.advanceTimersByTime(1_999);
    expect(ids(store.getState())).toEqual([1, 2]);
    vi.advanceTimersByTime(1);
    expect(ids(store.getState())).toEqual([1]);
    expect(store.getState().conversations.bob.last?.id).toBe(1);
    expect(hasExpiring(store.getState())).toBe(false);
    stop();
  });

  it("runs one clock for all messages, and only while something listens", () => {
    const clock = new Clock(1000);
    expect(vi.getTimerCount()).toBe(0);
    const stops = [clock.subscribe(() => undefined), clock.subscribe(() => undefined)];
    expect(vi.getTimerCount()).toBe(1);
    stops.forEach((stop) => stop());
    expect(vi.getTimerCount()).toBe(0);
  });

  it("leaves the state as it was on a tick that expires nothing, so nothing renders again", () => {
    const store = storeWith({ type: "message", message: message(1, "bob", "alice", null, at(60_000)) });
    const listener = vi.fn();
    store.subscribe(listener);
    const before = store.getState();
    store.dispatch({ type: "tick", now: T0 + 1_000 });
    expect(store.getState()).toBe(before);
    expect(listener).not.toHaveBeenCalled();
  });

  it("counts by the server's clock as live frames show it: here 5 s ahead of ours", () => {
    // An ack for a message stored at T0+5 s arrives at T0 on our clock.
    const mine = { ...message(9, "alice", "bob", "c9", at(35_000)), sent_at: at(5_000) };
    let state = run({ type: "ack", client_id: "c9", message: mine, at: T0 });
    expect(state.clock.offset).toBe(5_000);
    state = reduce(state, { type: "tick", now: T0 + 29_999 });
    expect(ids(state)).toEqual([9]);
    state = reduce(state, { type: "tick", now: T0 + 30_000 });
    expect(ids(state)).toEqual([]);
  });

  it("takes the largest sample of a connection: a late frame cannot push expiry early or late", () => {
    const live = { ...message(1), sent_at: at(5_000) };
    const late = { ...message(2), sent_at: at(-60_000) };  // a retried send's old ack, say
    let state = run({ type: "message", message: live, at: T0 }, { type: "message", message: late, at: T0 });
    expect(state.clock.offset).toBe(5_000);
    state = reduce(state, { type: "message", message: message(3), at: undefined });  // a replay: no sample
    expect(state.clock).toEqual({ offset: 5_000, sampled: true });
    state = reduce(state, { type: "connection", status: "connecting" });
    state = reduce(state, { type: "message", message: { ...message(4), sent_at: at(1_000) }, at: T0 });
    expect(state.clock.offset).toBe(1_000);  // a new connection measures again
  });
});

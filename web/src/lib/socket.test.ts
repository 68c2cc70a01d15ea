import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Message, User } from "./api";
import { ChatSocket, type SocketOptions, type WebSocketLike } from "./socket";
import { pendingTotal, Store } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };

/** Stands in for the browser's WebSocket: records what the client sends, lets the test speak as the server. */
class FakeSocket implements WebSocketLike {
  onopen: WebSocketLike["onopen"] = null;
  onmessage: WebSocketLike["onmessage"] = null;
  onclose: WebSocketLike["onclose"] = null;
  onerror: WebSocketLike["onerror"] = null;
  sent: Record<string, unknown>[] = [];
  send(data: string) { this.sent.push(JSON.parse(data)); }
  close(code = 1000) { this.onclose?.({ code }); }
  serve(frame: unknown) { this.onmessage?.({ data: JSON.stringify(frame) }); }
  sentOf(type: string) { return this.sent.filter((f) => f.type === type); }
}

function message(id: number, from: string, to: string, clientId: string | null = null): Message {
  return { id, from, to, message: `m${id}`, attachment: null, client_id: clientId, sent_at: "2026-01-01T00:00:00Z",
           expires_at: null };
}

function setup(options: Partial<SocketOptions> = {}) {
  const store = new Store();
  const sockets: FakeSocket[] = [];
  let next = 0;
  const chat = new ChatSocket({
    url: "ws://test/ws/chat/", getState: store.getState, dispatch: store.dispatch, random: () => 1,
    createSocket: () => { const s = new FakeSocket(); sockets.push(s); return s; },
    newClientId: () => `c${++next}`, ...options,
  });
  chat.start();
  return { store, sockets, chat, current: () => sockets[sockets.length - 1] };
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe("ChatSocket", () => {
  it("syncs from 0 after ready, then from the last id after a reconnect with backoff", () => {
    const { store, sockets, current } = setup();
    current().serve({ type: "ready", user: alice });
    expect(current().sentOf("sync")).toEqual([{ type: "sync", since: 0 }]);
    current().serve({ type: "chat", message: message(4, "bob", "alice") });
    current().serve({ type: "synced", last_id: 4 });
    current().close(1006);
    expect(store.getState().connection).toBe("offline");
    vi.advanceTimersByTime(499);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    current().close(1006);  // the second try waits longer
    vi.advanceTimersByTime(999);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    current().serve({ type: "ready", user: alice });
    expect(current().sentOf("sync")).toEqual([{ type: "sync", since: 4 }]);
    current().serve({ type: "chat", message: message(4, "bob", "alice") });  // replayed: already shown
    current().serve({ type: "chat", message: message(6, "bob", "alice") });
    expect(store.getState().threads.bob.entries.map((e) => e.id)).toEqual([4, 6]);
  });

  it("keeps a send pending across a reconnect and retries it with the same client_id", () => {
    const { store, chat, current } = setup();
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    const clientId = chat.send("bob", "hello");
    expect(current().sentOf("chat")).toEqual([{ type: "chat", to: "bob", message: "hello", client_id: clientId }]);
    current().close(1006);  // dropped before the ack
    vi.advanceTimersByTime(500);
    current().serve({ type: "ready", user: alice });
    expect(current().sentOf("chat")).toEqual([]);  // not before `synced`: sync may show it was stored
    current().serve({ type: "synced", last_id: 0 });
    expect(current().sentOf("chat")).toEqual([{ type: "chat", to: "bob", message: "hello", client_id: clientId }]);
    expect(store.getState().threads.bob.entries.map((e) => e.id)).toEqual([null]);
    current().serve({ type: "ack", client_id: clientId, message: message(3, "alice", "bob", clientId) });
    expect(store.getState().threads.bob.entries.map((e) => [e.id, e.client_id])).toEqual([[3, clientId]]);
    current().close(1006);
    vi.advanceTimersByTime(500);
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 3 });
    expect(current().sentOf("chat")).toEqual([]);  // acked: never sent again
  });

  it("sends a message written while offline once the socket is back, and it is pending till then", () => {
    const { store, chat, current } = setup();
    const clientId = chat.send("bob", "written offline");
    expect(current().sent).toEqual([]);
    expect(store.getState().threads.bob.entries[0]).toMatchObject({ id: null, client_id: clientId });
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    expect(current().sentOf("chat")).toHaveLength(1);
  });

  it("retries a send the server refused as rate limited after retry_after_ms, or as cleared meanwhile; a bad one fails", () => {
    const { store, chat, current } = setup();
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    const limited = chat.send("bob", "fast");
    current().serve({ type: "error", code: "rate_limited", message: "slow down", client_id: limited, retry_after_ms: 200 });
    vi.advanceTimersByTime(200);
    expect(current().sentOf("chat").map((f) => f.client_id)).toEqual([limited, limited]);
    const cleared = chat.send("bob", "while bob logs out and in");
    current().serve({ type: "error", code: "conversation_cleared", message: "send it again", client_id: cleared });
    vi.advanceTimersByTime(1000);
    expect(current().sentOf("chat").map((f) => f.client_id)).toEqual([limited, limited, cleared, cleared]);
    const bad = chat.send("nobody", "hi");
    current().serve({ type: "error", code: "unknown_user", message: "No such user.", client_id: bad });
    expect(store.getState().threads.nobody.entries[0].failed).toBe("No such user.");
  });

  it("waits for the network instead of retrying while offline, then reconnects at once", () => {
    const store = new Store();
    const sockets: FakeSocket[] = [];
    let online = true;
    const chat = new ChatSocket({ url: "ws://t/", getState: store.getState, dispatch: store.dispatch,
      isOnline: () => online, createSocket: () => { const s = new FakeSocket(); sockets.push(s); return s; } });
    chat.start();
    sockets[0].serve({ type: "ready", user: alice });
    online = false;
    chat.drop();
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
    online = true;
    chat.reconnectNow();
    expect(sockets).toHaveLength(2);
    chat.stop();
  });

  it("opens nothing before start, so the first sync can wait for the conversation list", () => {
    const store = new Store();
    const sockets: FakeSocket[] = [];
    const chat = new ChatSocket({ url: "ws://t/", getState: store.getState, dispatch: store.dispatch,
      createSocket: () => { const s = new FakeSocket(); sockets.push(s); return s; } });
    chat.reconnectNow();  // the browser's "online" event, while the list is still loading
    expect(sockets).toHaveLength(0);
    const bob: User = { ...alice, id: 2, username: "bob" };
    store.dispatch({ type: "conversations", list: [{ with: bob, last_message: message(60, "bob", "alice"), unread: 60, timer: 0 }] });
    chat.start();
    sockets[0].serve({ type: "ready", user: alice });
    expect(sockets[0].sentOf("sync")).toEqual([{ type: "sync", since: 60 }]);
    expect(store.getState().conversations.bob.unread).toBe(60);
    chat.stop();
  });

  it("stops reconnecting when the session is revoked (4401)", () => {
    const revoked = vi.fn();
    const store = new Store();
    const sockets: FakeSocket[] = [];
    const chat = new ChatSocket({ url: "ws://t/", getState: store.getState, dispatch: store.dispatch,
      onUnauthenticated: revoked, createSocket: () => { const s = new FakeSocket(); sockets.push(s); return s; } });
    chat.start();
    sockets[0].close(4401);
    vi.advanceTimersByTime(60_000);
    expect(revoked).toHaveBeenCalledOnce();
    expect(sockets).toHaveLength(1);
    chat.stop();
  });

  it("passes cleared on to the store", () => {
    const { store, current } = setup();
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "chat", message: message(1, "bob", "alice") });
    current().serve({ type: "cleared", with: "bob" });
    expect(store.getState().threads.bob.entries).toEqual([]);
    expect(store.getState().threads.bob.clearedBy).toBe("bob");
  });

  it("applies `timer` and `deleted` frames, and says which conversation lost messages", () => {
    const deleted = vi.fn();
    const { store, current } = setup({ onDeleted: deleted, now: () => Date.parse("2026-01-01T00:00:07Z") });
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "chat", message: message(1, "bob", "alice") });
    current().serve({ type: "chat", message: message(2, "alice", "bob") });
    current().serve({ type: "timer", with: "bob", seconds: 30, by: "bob" });
    expect(store.getState().timers.bob).toEqual({ seconds: 30, setBy: "bob", setAt: "2026-01-01T00:00:07.000Z" });
    current().serve({ type: "deleted", with: "bob", ids: [2], reason: "expired" });
    expect(store.getState().threads.bob.entries.map((e) => e.id)).toEqual([1]);
    expect(deleted).toHaveBeenCalledWith("bob");
  });

  it("reloads what it shows after a reconnect, since sync replays no removals; not on the first connection", () => {
    const resync = vi.fn();
    const { store, current } = setup({ onResync: resync });
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "chat", message: message(1, "bob", "alice") });
    current().serve({ type: "synced", last_id: 1 });
    expect(resync).not.toHaveBeenCalled();
    current().close(1006);  // message 1 is deleted meanwhile; the `deleted` frame never reaches us
    vi.advanceTimersByTime(500);
    current().serve({ type: "ready", user: alice });
    expect(resync).toHaveBeenCalledOnce();
    expect(store.getState().threads.bob.entries).toEqual([]);
    expect(current().sentOf("sync")).toEqual([{ type: "sync", since: 1 }]);
  });

  it("measures the server's clock from live frames only, not from sync's replay", () => {
    const { store, current } = setup({ now: () => Date.parse("2026-01-01T00:00:00Z") });
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "chat", message: { ...message(1, "bob", "alice"), sent_at: "2025-12-01T00:00:00Z" } });
    expect(store.getState().clock.sampled).toBe(false);
    current().serve({ type: "synced", last_id: 1 });
    current().serve({ type: "chat", message: { ...message(2, "bob", "alice"), sent_at: "2026-01-01T00:00:03Z" } });
    expect(store.getState().clock).toEqual({ offset: 3_000, sampled: true });
  });
  it("drops a retried send the server answers `gone`: it was delivered, then deleted or expired", () => {
    const { store, chat, current } = setup();
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    const clientId = chat.send("bob", "soon gone");
    current().close(1006);  // stored, but the ack never came; the message expired meanwhile
    vi.advanceTimersByTime(500);
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    current().serve({ type: "error", code: "gone", message: "That message was deleted.", client_id: clientId,
                      fields: { client_id: "deleted or expired" } });
    expect(store.getState().threads.bob.entries).toEqual([]);  // no "Not sent"
    expect(pendingTotal(store.getState())).toBe(0);
    current().close(1006);
    vi.advanceTimersByTime(1000);
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    expect(current().sentOf("chat")).toEqual([]);  // never sent again
  });

  it("marks a send refused as `blocked` not sent, tells who refused, and does not send it again", () => {
    const blocked = vi.fn();
    const { store, chat, current } = setup({ onBlocked: blocked });
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    const clientId = chat.send("bob", "are you there?");
    current().serve({ type: "error", code: "blocked", message: "One of you blocked the other.", client_id: clientId });
    expect(store.getState().threads.bob.entries[0]).toMatchObject({ id: null, failed: "One of you blocked the other." });
    expect(blocked).toHaveBeenCalledWith("bob");
    current().close(1006);
    vi.advanceTimersByTime(500);
    current().serve({ type: "ready", user: alice });
    current().serve({ type: "synced", last_id: 0 });
    expect(current().sentOf("chat")).toEqual([]);
  });
});

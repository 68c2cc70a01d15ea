// The chat socket: connects, waits for `ready`, `sync`s from the last id it saw,
// keeps every unacknowledged send by client_id and sends it again (same client_id,
// so the server never stores it twice) until its `ack`. Not React: it feeds the store.
// `sync` replays messages but not removals (`deleted`, `cleared`): after a reconnect the
// client may have missed some, so it reloads what it shows, as on the server's `resync`.
import type { ClientFrame, FileInfo, Message, ServerFrame } from "./api";
import type { Action, State } from "./store";

/** What the class needs of a WebSocket; tests give it a fake, the app the browser's. */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number): void;
}

export interface SocketOptions {
  url: string;
  getState: () => State;
  dispatch: (action: Action) => void;
  onUnauthenticated?: () => void;
  onRefused?: (code: string, message: string) => void;
  onResync?: () => void;
  onDeleted?: (peer: string) => void;
  /** A send to `peer` was refused because one of the two blocks the other (v1.2). */
  onBlocked?: (peer: string) => void;
  /** Called with each acked or received message before the store has it, so the caller can
   *  compare with what was known (a new conversation, a message not seen yet). */
  onMessage?: (message: Message, kind: "ack" | "chat") => void;
  createSocket?: (url: string) => WebSocketLike;
  newClientId?: () => string;
  random?: () => number;
  now?: () => number;
  isOnline?: () => boolean;
}

type ChatFrame = Extract<ClientFrame, { type: "chat" }>;

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const HEARTBEAT_MS = 15_000;
const TYPING_EVERY_MS = 2_000;
const TYPING_SHOWN_MS = 4_000;
// Refusals where nothing was stored and the same frame may simply go again (docs/api.md).
const RETRYABLE = new Set(["rate_limited", "unavailable", "conversation_cleared"]);
const UNAUTHENTICATED = 4401;
const GONE = "gone";
const BLOCKED = "blocked";

export class ChatSocket {
  private socket: WebSocketLike | null = null;
  private ready = false;
  private wasReady = false;
  private syncing = false;
  private stopped = true;  // until `start`: `reconnectNow` must not connect first
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private lastTyping = 0;
  private readonly pending = new Map<string, ChatFrame>();
  private readonly options: Required<Omit<SocketOptions, "onUnauthenticated" | "onRefused" | "onResync" | "onDeleted" | "onBlocked" | "onMessage">> & SocketOptions;

  constructor(options: SocketOptions) {
    this.options = {
      createSocket: (url) => new WebSocket(url) as unknown as WebSocketLike,
      newClientId: () => crypto.randomUUID(),
      random: Math.random,
      now: Date.now,
      isOnline: () => true,
      ...options,
    };
  }

  /** Open the socket; it reconnects by itself until `stop`. */
  start(): void {
    this.stopped = false;
    this.connect();
    this.heartbeat = setInterval(() => this.checkAlive(), HEARTBEAT_MS);
  }

  /** Close for good (logout): no reconnect, pending sends forgotten. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.heartbeat);
    this.pending.clear();
    this.socket?.close(1000);
    this.socket = null;
  }

  /** The network went away: drop the socket now rather than wait for a timeout. */
  drop(): void {
    this.socket?.close(1000);
  }

  /** The network is back: reconnect at once instead of waiting out the backoff. */
  reconnectNow(): void {
    if (this.stopped || this.ready) return;
    clearTimeout(this.reconnectTimer);
    this.attempt = 0;
    this.connect();
  }

  /** Send a message; it shows as pending until the server's `ack`. Returns its client_id. */
  send(to: string, message: string, attachment?: FileInfo): string {
    const clientId = this.options.newClientId();
    const frame: ChatFrame = { type: "chat", to, message, client_id: clientId, ...(attachment ? { attachment: attachment.id } : {}) };
    const me = this.options.getState().me?.username ?? "";
    this.options.dispatch({ type: "pending", entry: {
      id: null, client_id: clientId, from: me, to, message, attachment: attachment ?? null,
      sent_at: new Date(this.options.now()).toISOString(), expires_at: null,
    } });
    this.pending.set(clientId, frame);
    if (this.ready) this.transmit(frame);
    return clientId;
  }

  /** Tell the peer we are typing, at most every couple of seconds. */
  typing(to: string): void {
    const now = this.options.now();
    if (!this.ready || now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.transmit({ type: "typing", to });
  }

  /** A read receipt for the peer's messages up to `upTo`. */
  read(peer: string, upTo: number): void {
    if (this.ready) this.transmit({ type: "read", with: peer, up_to: upTo });
  }

  private connect(): void {
    this.ready = false;
    this.options.dispatch({ type: "connection", status: "connecting" });
    const socket = this.options.createSocket(this.options.url);
    this.socket = socket;
    socket.onmessage = (event) => this.socket === socket && this.receive(JSON.parse(String(event.data)) as ServerFrame);
    socket.onclose = (event) => this.socket === socket && this.closed(event.code);
    socket.onerror = () => undefined;  // onclose follows and decides
  }

  private closed(code: number): void {
    this.socket = null;
    this.ready = false;
    this.options.dispatch({ type: "connection", status: "offline" });
    if (code === UNAUTHENTICATED) this.options.onUnauthenticated?.();
    // Offline, a try would only fail: `reconnectNow` runs when the network is back.
    if (this.stopped || code === UNAUTHENTICATED || !this.options.isOnline()) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => this.connect(), ceiling * (0.5 + this.options.random() / 2));
  }

  private checkAlive(): void {
    if (!this.ready) return;
    if (this.options.now() - this.lastHeard > 2 * HEARTBEAT_MS) this.socket?.close(4000);
    else this.transmit({ type: "ping" });
  }

  private transmit(frame: ClientFrame): void {
    this.socket?.send(JSON.stringify(frame));
  }

  private receive(frame: ServerFrame): void {
    const now = this.options.now();
    this.lastHeard = now;
    const dispatch = this.options.dispatch;
    switch (frame.type) {
      case "ready":
        this.ready = true;
        this.attempt = 0;
        dispatch({ type: "me", user: frame.user });
        dispatch({ type: "connection", status: "online" });
        if (this.wasReady) this.resync();
        this.wasReady = true;
        this.syncing = true;
        this.transmit({ type: "sync", since: this.options.getState().lastId });
        return;
      case "synced":
        this.syncing = false;
        dispatch({ type: "synced", last_id: frame.last_id });
        this.pending.forEach((pending) => this.transmit(pending));
        return;
      case "ack":
        if (frame.client_id) this.pending.delete(frame.client_id);
        this.options.onMessage?.(frame.message, "ack");
        dispatch({ type: "ack", client_id: frame.client_id, message: frame.message, at: now });
        return;
      case "chat":  // a replay's sent_at says nothing of the server's clock now
        this.options.onMessage?.(frame.message, "chat");
        return dispatch({ type: "message", message: frame.message, at: this.syncing ? undefined : now });
      case "read":
        return dispatch({ type: "read", by: frame.by, up_to: frame.up_to });
      case "typing":
        return dispatch({ type: "typing", from: frame.from, until: this.options.now() + TYPING_SHOWN_MS });
      case "presence":
        return dispatch({ type: "presence", user: frame.user, online: frame.online });
      case "profile":
        return dispatch({ type: "profile", user: frame.user });
      case "cleared":
        return dispatch({ type: "cleared", with: frame.with });
      case "resync":
        return this.resync();
      case "deleted":
        dispatch({ type: "deleted", with: frame.with, ids: frame.ids });
        return this.options.onDeleted?.(frame.with);
      case "timer":
        return dispatch({ type: "timer", with: frame.with, seconds: frame.seconds, by: frame.by,
                          at: new Date(now).toISOString() });
      case "error":
        return this.refused(frame.code, frame.message, frame.client_id ?? null, frame.retry_after_ms);
      case "pong":
        return;
    }
  }

  private resync(): void {
    this.options.dispatch({ type: "resync" });
    this.options.onResync?.();
  }

  private refused(code: string, message: string, clientId: string | null, retryAfterMs?: number): void {
    const frame = clientId ? this.pending.get(clientId) : undefined;
    if (!frame || !clientId) return this.options.onRefused?.(code, message);
    if (RETRYABLE.has(code)) {
      setTimeout(() => this.pending.has(clientId) && this.ready && this.transmit(frame), retryAfterMs ?? 1000);
      return;
    }
    this.pending.delete(clientId);
    // A retry whose message was deleted or expired since it was stored: delivered, then gone.
    if (code === GONE) return this.options.dispatch({ type: "dropped", client_id: clientId });
    this.options.dispatch({ type: "failed", client_id: clientId, reason: message });
    if (code === BLOCKED && frame.to) this.options.onBlocked?.(frame.to);
  }
}

// The client's state and its reducer: plain TypeScript, tested without a DOM.
// Messages are kept per peer, acked ones in id order, pending ones after them. Messages with
// `expires_at` are dropped on the first `tick` at or after it, by the server's clock as estimated
// from live frames, whether or not the server's `deleted` frame has come yet.
import type { Conversation, FileInfo, Message, User } from "./api";

/** A message as shown: acked (has an id) or pending (only a client_id so far). */
export interface Entry {
  id: number | null;
  client_id: string | null;
  from: string;
  to: string;
  message: string;
  attachment: FileInfo | null;
  sent_at: string;
  expires_at: string | null;
  failed?: string;
}

export interface Thread {
  entries: Entry[];
  hasMore: boolean;
  loaded: boolean;
  peerReadUpTo: number;
  clearedBy?: string;
}

export interface ConversationMeta {
  peer: User | null;
  username: string;
  last: Entry | null;
  unread: number;
}

/** A conversation's disappearing-messages timer; who set it and when, once known. */
export interface TimerSetting {
  seconds: number;
  setBy: string | null;
  setAt: string | null;
}

/** How far the server's clock is ahead of ours (ms), and whether this connection has measured it. */
export interface ServerClock {
  offset: number;
  sampled: boolean;
}

export type Connection = "connecting" | "online" | "offline";

export interface State {
  me: User | null;
  conversations: Record<string, ConversationMeta>;
  threads: Record<string, Thread>;
  presence: Record<string, boolean>;
  typingUntil: Record<string, number>;
  timers: Record<string, TimerSetting>;
  clock: ServerClock;
  open: string | null;
  lastId: number;
  connection: Connection;
}

export type Action =
  | { type: "me"; user: User | null }
  | { type: "conversations"; list: Conversation[] }
  | { type: "open"; with: string | null }
  | { type: "history"; with: string; messages: Message[]; hasMore: boolean; older: boolean }
  | { type: "pending"; entry: Entry }
  | { type: "ack"; client_id: string | null; message: Message; at?: number }
  | { type: "message"; message: Message; at?: number }
  | { type: "failed"; client_id: string; reason: string }
  | { type: "read"; by: string; up_to: number }
  | { type: "typing"; from: string; until: number }
  | { type: "presence"; user: string; online: boolean }
  | { type: "cleared"; with: string }
  | { type: "deleted"; with: string; ids: number[] }
  | { type: "timer"; with: string; seconds: number; by: string | null; at: string | null }
  | { type: "tick"; now: number }
  | { type: "synced"; last_id: number }
  | { type: "resync" }
  | { type: "connection"; status: Connection };

export const initialState: State = {
  me: null, conversations: {}, threads: {}, presence: {}, typingUntil: {}, timers: {},
  clock: { offset: 0, sampled: false }, open: null, lastId: 0, connection: "connecting",
};

export const timerOff: TimerSetting = { seconds: 0, setBy: null, setAt: null };

export const emptyThread: Thread = { entries: [], hasMore: false, loaded: false, peerReadUpTo: 0 };

export function peerOf(me: string, message: { from: string; to: string }): string {
  return message.from === me ? message.to : message.from;
}

function toEntry(message: Message): Entry {
  const { id, client_id, from, to, message: text, attachment, sent_at, expires_at } = message;
  return { id, client_id, from, to, message: text, attachment: attachment ?? null, sent_at, expires_at: expires_at ?? null };
}

function byId(a: Entry, b: Entry): number {
  if (a.id === null || b.id === null) return (a.id === null ? 1 : 0) - (b.id === null ? 1 : 0);
  return a.id - b.id;
}

/** Merge acked messages into entries: one per id, a pending entry replaced by its ack. */
export function mergeEntries(entries: Entry[], messages: Message[]): Entry[] {
  const incoming = messages.map(toEntry);
  const ids = new Set(incoming.map((entry) => entry.id));
  const acked = new Set(incoming.filter((e) => e.client_id !== null).map((e) => `${e.from}\n${e.client_id}`));
  const kept = entries.filter((entry) => entry.id === null
    ? !acked.has(`${entry.from}\n${entry.client_id}`)
    : !ids.has(entry.id));
  return [...kept, ...incoming].sort(byId);
}

function isNew(thread: Thread, message: Message): boolean {
  return !thread.entries.some((entry) => entry.id === message.id);
}

function withThread(state: State, peer: string, change: (thread: Thread) => Thread): State {
  const thread = state.threads[peer] ?? emptyThread;
  return { ...state, threads: { ...state.threads, [peer]: change(thread) } };
}

function withConversation(state: State, peer: string, change: (meta: ConversationMeta) => ConversationMeta): State {
  const meta = state.conversations[peer] ?? { peer: null, username: peer, last: null, unread: 0 };
  return { ...state, conversations: { ...state.conversations, [peer]: change(meta) } };
}

function receive(state: State, message: Message): State {
  const me = state.me?.username ?? "";
  const peer = peerOf(me, message);
  const fresh = isNew(state.threads[peer] ?? emptyThread, message);
  // A message no newer than the conversation's last known one is in the list's unread count
  // already: a `sync` replay arriving after the list must not count it twice.
  const known = state.conversations[peer]?.last?.id ?? null;
  const unseen = fresh && message.from === peer && state.open !== peer && (known === null || message.id > known);
  let next = withThread(state, peer, (t) => ({ ...t, entries: mergeEntries(t.entries, [message]), clearedBy: undefined }));
  next = withConversation(next, peer, (meta) => ({
    ...meta,
    last: meta.last && meta.last.id !== null && meta.last.id > message.id ? meta.last : toEntry(message),
    unread: meta.unread + (unseen ? 1 : 0),
  }));
  const typingUntil = message.from === peer ? { ...next.typingUntil, [peer]: 0 } : next.typingUntil;
  return { ...next, typingUntil, lastId: Math.max(next.lastId, message.id) };
}

function conversationsFrom(list: Conversation[]): Record<string, ConversationMeta> {
  return Object.fromEntries(list.map((c) => [c.with.username, {
    peer: c.with, username: c.with.username, last: toEntry(c.last_message), unread: c.unread,
  }]));
}

/** The list says only how long each timer is: who set it is kept while the length is the same. */
function timersFrom(list: Conversation[], timers: Record<string, TimerSetting>): Record<string, TimerSetting> {
  const listed = list.map((c): [string, TimerSetting] => {
    const known = timers[c.with.username];
    return [c.with.username, known?.seconds === c.timer ? known : { ...timerOff, seconds: c.timer }];
  });
  return listed.length ? { ...timers, ...Object.fromEntries(listed) } : timers;
}

/** Remove entries from a conversation, and from its preview; the same state when none is there. */
function removeEntries(state: State, peer: string, gone: (entry: Entry) => boolean): State {
  const inThread = state.threads[peer]?.entries.some(gone) ?? false;
  const last = state.conversations[peer]?.last;
  if (!inThread && !(last && gone(last))) return state;
  const next = inThread ? withThread(state, peer, (t) => ({ ...t, entries: t.entries.filter((e) => !gone(e)) })) : state;
  if (!last || !gone(last)) return next;
  const acked = (next.threads[peer]?.entries ?? []).filter((e) => e.id !== null);
  return withConversation(next, peer, (meta) => ({ ...meta, last: acked[acked.length - 1] ?? null }));
}

/** Drop every message whose `expires_at` has passed on the server's clock. */
function expire(state: State, serverNow: number): State {
  const gone = (e: Entry) => e.expires_at !== null && Date.parse(e.expires_at) <= serverNow;
  const peers = new Set([...Object.keys(state.threads), ...Object.keys(state.conversations)]);
  return [...peers].reduce((s, peer) => removeEntries(s, peer, gone), state);
}

/** Does anything shown carry an `expires_at`? Then the clock must tick. */
export function hasExpiring(state: State): boolean {
  return Object.values(state.threads).some((t) => t.entries.some((e) => e.expires_at !== null))
    || Object.values(state.conversations).some((m) => m.last?.expires_at != null);
}

/** A live frame's `sent_at` is at most the server's time when it arrived, so the largest
 *  `sent_at - arrival` of a connection is the closest estimate from below: late frames (a
 *  retried send's old ack, a replay) only make it smaller and are outvoted. Each new
 *  connection starts over, in case this device's clock was changed meanwhile. */
function measured(clock: ServerClock, message: Message, at: number | undefined): ServerClock {
  const sample = Date.parse(message.sent_at) - (at ?? NaN);
  if (!Number.isFinite(sample)) return clock;
  return { offset: clock.sampled ? Math.max(clock.offset, sample) : sample, sampled: true };
}

function lastIdOf(list: Conversation[], lastId: number): number {
  return list.reduce((max, c) => Math.max(max, c.last_message.id), lastId);
}

function online(state: State, user: string): State {
  return { ...state, presence: { ...state.presence, [user]: true } };
}

/** The one place state changes; every action is a frame or an answer from the server. */
export function reduce(state: State, action: Action): State {
  switch (action.type) {
    case "me":
      return action.user ? { ...state, me: action.user } : { ...initialState, connection: state.connection };
    case "conversations":
      return { ...state, conversations: conversationsFrom(action.list), lastId: lastIdOf(action.list, state.lastId),
               timers: timersFrom(action.list, state.timers) };
    case "open":
      return action.with ? withConversation({ ...state, open: action.with }, action.with, (m) => ({ ...m, unread: 0 }))
                         : { ...state, open: null };
    case "history":
      return withThread(state, action.with, (t) => ({
        ...t, entries: mergeEntries(t.entries, action.messages), loaded: true,
        hasMore: action.older || !t.loaded ? action.hasMore : t.hasMore,
      }));
    case "pending":
      return withThread(state, action.entry.to, (t) => ({ ...t, entries: [...t.entries, action.entry], clearedBy: undefined }));
    case "ack":
    case "message":
      return { ...receive(state, action.message), clock: measured(state.clock, action.message, action.at) };
    case "failed":
      return Object.keys(state.threads).reduce((s, peer) => withThread(s, peer, (t) => ({
        ...t, entries: t.entries.map((e) => e.id === null && e.client_id === action.client_id ? { ...e, failed: action.reason } : e),
      })), state);
    // Receipts and typing come only from a connected client: the peer is online, even if
    // the server had no presence to announce because the conversation began after they connected.
    case "read":
      return withThread(online(state, action.by), action.by, (t) => ({ ...t, peerReadUpTo: Math.max(t.peerReadUpTo, action.up_to) }));
    case "typing":
      return { ...online(state, action.from), typingUntil: { ...state.typingUntil, [action.from]: action.until } };
    case "presence":
      return { ...state, presence: { ...state.presence, [action.user]: action.online } };
    case "cleared": {  // a logout's clearing also turns the conversation's timer off
      const conversations = { ...state.conversations };
      delete conversations[action.with];
      const timers = { ...state.timers, [action.with]: timerOff };
      return withThread({ ...state, conversations, timers }, action.with, (t) => ({
        ...t, entries: t.entries.filter((e) => e.id === null), hasMore: false, peerReadUpTo: 0, clearedBy: action.with,
      }));
    }
    case "deleted": {
      const ids = new Set(action.ids);
      return removeEntries(state, action.with, (e) => e.id !== null && ids.has(e.id));
    }
    case "timer":
      return { ...state, timers: { ...state.timers, [action.with]: { seconds: action.seconds, setBy: action.by, setAt: action.at } } };
    case "tick":
      return expire(state, action.now + state.clock.offset);
    case "synced":
      return { ...state, lastId: Math.max(state.lastId, action.last_id) };
    // The server may have failed to tell us of removals: what it delivered is dropped and loaded
    // again (the caller reloads conversations and the open thread); pending sends stay.
    case "resync":
      return { ...state, threads: Object.fromEntries(Object.entries(state.threads).map(([peer, t]) =>
        [peer, { ...t, entries: t.entries.filter((e) => e.id === null), loaded: false }])) };
    case "connection":  // while cut off we know nobody's presence; `ready` brings it again
      return { ...state, connection: action.status, presence: action.status === "online" ? state.presence : {},
               clock: action.status === "connecting" ? { ...state.clock, sampled: false } : state.clock };
  }
}

/** A tiny observable holder of State, so React and the socket share one source of truth. */
export class Store {
  private listeners = new Set<() => void>();
  constructor(private state: State = initialState) {}

  getState = (): State => this.state;

  dispatch = (action: Action): void => {
    const next = reduce(this.state, action);
    if (next === this.state) return;  // a tick that expired nothing, say
    this.state = next;
    this.listeners.forEach((listener) => listener());
  };

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}

/** Drop expired messages on every tick of the shared clock (while subscribed); returns the unsubscribe. */
export function expireOnTick(clock: { subscribe(listener: () => void): () => void; getNow(): number }, store: Store): () => void {
  return clock.subscribe(() => store.dispatch({ type: "tick", now: clock.getNow() }));
}

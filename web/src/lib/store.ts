// The client's state and its reducer: plain TypeScript, tested without a DOM.
// Messages are kept per peer (entries.ts), and so is what each conversation's screen holds
// (views.ts). Messages with `expires_at` are dropped on the first `tick` at or after it, by the
// server's clock as estimated from live frames, whether or not the server's `deleted` frame has come yet.
import type { Conversation, Message, User } from "./api";
import { changeBlocks, heardFrom, noBlocks, type BlockChange, type Blocks } from "./blocks";
import { isNew, mergeEntries, toEntry, type Entry } from "./entries";
import { changeView, emptyView, type PeerView, type ViewChange } from "./views";

export type { Entry } from "./entries";

export interface Thread {
  entries: Entry[];
  hasMore: boolean;
  loaded: boolean;
  loading: boolean;
  error: string | null;  // the last load failed: why, until a retry
  peerReadUpTo: number;
  clearedBy?: string;
}

export interface ConversationMeta {
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

/** The conversation list's load: the first screen after login shows it. */
export type ListLoad = "loading" | "ready" | { error: string };

export interface State {
  me: User | null;
  conversations: Record<string, ConversationMeta>;  // only conversations with a message
  people: Record<string, User>;                      // everyone whose public profile we know
  threads: Record<string, Thread>;
  views: Record<string, PeerView>;
  presence: Record<string, boolean>;
  presenceAt: Record<string, number>;                // the `presences` count when each was last told
  presences: number;
  typingUntil: Record<string, number>;
  timers: Record<string, TimerSetting>;
  clock: ServerClock;
  open: string | null;
  visible: boolean;                                  // the tab is shown: what arrives in the open chat is seen
  lastId: number;
  connection: Connection;
  list: ListLoad;
  blocks: Blocks;
  ended: string | null;                              // why the last session ended, for the login screen
}

export type Action =
  | { type: "me"; user: User | null; ended?: string }
  | { type: "conversations"; list: Conversation[] }
  | { type: "listFailed"; error: string }
  | { type: "open"; with: string | null }
  | { type: "visible"; visible: boolean }
  | { type: "historyLoading"; with: string }
  | { type: "historyFailed"; with: string; error: string }
  | { type: "history"; with: string; messages: Message[]; hasMore: boolean; older: boolean }
  | { type: "pending"; entry: Entry }
  | { type: "ack"; client_id: string | null; message: Message; at?: number }
  | { type: "message"; message: Message; at?: number }
  | { type: "failed"; client_id: string; reason: string }
  | { type: "dropped"; client_id: string }
  | { type: "read"; by: string; up_to: number }
  | { type: "typing"; from: string; until: number }
  | { type: "presence"; user: string; online: boolean }
  | { type: "person"; user: User; online: boolean; asOf: number }
  | { type: "profile"; user: User }
  | { type: "cleared"; with: string }
  | { type: "deleted"; with: string; ids: number[] }
  | { type: "timer"; with: string; seconds: number; by: string | null; at: string | null }
  | { type: "tick"; now: number }
  | { type: "synced"; last_id: number }
  | { type: "resync" }
  | { type: "connection"; status: Connection }
  | ViewChange
  | BlockChange;

export const initialState: State = {
  me: null, conversations: {}, people: {}, threads: {}, views: {}, presence: {}, presenceAt: {}, presences: 0,
  typingUntil: {}, timers: {}, clock: { offset: 0, sampled: false }, open: null, visible: true, lastId: 0,
  connection: "connecting", list: "loading", blocks: noBlocks, ended: null,
};

export const timerOff: TimerSetting = { seconds: 0, setBy: null, setAt: null };

export const emptyThread: Thread = { entries: [], hasMore: false, loaded: false, loading: false, error: null, peerReadUpTo: 0 };

export function peerOf(me: string, message: { from: string; to: string }): string {
  return message.from === me ? message.to : message.from;
}

function withThread(state: State, peer: string, change: (thread: Thread) => Thread): State {
  const thread = state.threads[peer] ?? emptyThread;
  return { ...state, threads: { ...state.threads, [peer]: change(thread) } };
}

function withConversation(state: State, peer: string, change: (meta: ConversationMeta) => ConversationMeta): State {
  const meta = state.conversations[peer] ?? { username: peer, last: null, unread: 0 };
  return { ...state, conversations: { ...state.conversations, [peer]: change(meta) } };
}

function withView(state: State, peer: string, change: (view: PeerView) => PeerView): State {
  return { ...state, views: { ...state.views, [peer]: change(state.views[peer] ?? emptyView) } };
}

/** Is this conversation on screen, so what arrives in it is seen as it comes? */
function seeing(state: State, peer: string): boolean {
  return state.open === peer && state.visible;
}

/** The open conversation is being read: its unread count goes, once its messages are shown. */
function seen(state: State): State {
  const peer = state.open;
  if (!peer || !state.visible || !state.threads[peer]?.loaded || !state.conversations[peer]?.unread) return state;
  return withConversation(state, peer, (meta) => ({ ...meta, unread: 0 }));
}

/** The first of the last `unread` messages from the peer: where "New messages" goes. */
function firstUnread(entries: Entry[], peer: string, unread: number): number | null {
  if (unread <= 0) return null;
  const theirs = entries.filter((entry) => entry.from === peer && entry.id !== null);
  return theirs[Math.max(0, theirs.length - unread)]?.id ?? null;
}

function placeMarker(state: State, peer: string, unread = state.conversations[peer]?.unread ?? 0): State {
  const thread = state.threads[peer];
  if (!thread?.loaded || unread === 0) return state;
  return withView(state, peer, (view) => ({ ...view, marker: firstUnread(thread.entries, peer, unread), unreadAtOpen: unread }));
}

function receive(state: State, message: Message): State {
  const me = state.me?.username ?? "";
  const peer = peerOf(me, message);
  const fresh = isNew(state.threads[peer]?.entries ?? [], message);
  // A message no newer than the conversation's last known one is in the list's unread count
  // already: a `sync` replay arriving after the list must not count it twice.
  const known = state.conversations[peer]?.last?.id ?? null;
  const unseen = fresh && message.from === peer && !seeing(state, peer) && (known === null || message.id > known);
  let next = withThread(state, peer, (t) => ({ ...t, entries: mergeEntries(t.entries, [message]), clearedBy: undefined }));
  next = withConversation(next, peer, (meta) => ({
    ...meta,
    last: meta.last && meta.last.id !== null && meta.last.id > message.id ? meta.last : toEntry(message),
    unread: meta.unread + (unseen ? 1 : 0),
  }));
  if (unseen && state.open === peer && !next.views[peer]?.marker) {  // the open chat, in a hidden tab
    next = withView(next, peer, (view) => ({ ...view, marker: message.id }));
  }
  const fromPeer = message.from === peer;
  const typingUntil = fromPeer ? { ...next.typingUntil, [peer]: 0 } : next.typingUntil;
  const blocks = fromPeer ? heardFrom(next.blocks, peer) : next.blocks;
  return { ...next, typingUntil, blocks, lastId: Math.max(next.lastId, message.id) };
}

function conversationsFrom(list: Conversation[]): Record<string, ConversationMeta> {
  return Object.fromEntries(list.map((c) => [c.with.username, {
    username: c.with.username, last: toEntry(c.last_message), unread: c.unread,
  }]));
}

function peopleFrom(list: Conversation[], people: Record<string, User>): Record<string, User> {
  return list.length ? { ...people, ...Object.fromEntries(list.map((c) => [c.with.username, c.with])) } : people;
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

/** Presence, typing and receipts pass only while no block stands between the two (v1.2), so any
 *  of them after a `blocked` refusal means the block was lifted: the peer's real presence is what
 *  the lift sends. (The `presence` a new block sends comes when it is made, before any refusal.) */
function told(state: State, user: string, online: boolean): State {
  const presences = state.presences + 1;
  return { ...state, presence: { ...state.presence, [user]: online }, presenceAt: { ...state.presenceAt, [user]: presences },
           presences, blocks: heardFrom(state.blocks, user) };
}

function forget(record: Record<string, boolean>, key: string): Record<string, boolean> {
  if (!(key in record)) return record;
  const rest = { ...record };
  delete rest[key];
  return rest;
}

function open(state: State, peer: string | null): State {
  const left = state.open && state.open !== peer
    ? withView(state, state.open, (view) => ({ ...view, marker: null, unreadAtOpen: 0 })) : state;
  if (!peer) return { ...left, open: null };
  return seen(placeMarker({ ...left, open: peer }, peer));
}

function loaded(state: State, action: Extract<Action, { type: "history" }>): State {
  const first = !state.threads[action.with]?.loaded;
  const next = withThread(state, action.with, (t) => ({
    ...t, entries: mergeEntries(t.entries, action.messages), loaded: true, loading: false, error: null,
    hasMore: action.older || !t.loaded ? action.hasMore : t.hasMore,
  }));
  if (next.open !== action.with) return next;
  const view = next.views[action.with];
  if (first) return seen(placeMarker(next, action.with));
  return action.older && view?.unreadAtOpen ? placeMarker(next, action.with, view.unreadAtOpen) : seen(next);
}

function cleared(state: State, peer: string): State {  // a logout's clearing also turns the conversation's timer off
  const conversations = { ...state.conversations };
  delete conversations[peer];
  const timers = { ...state.timers, [peer]: timerOff };
  // No conversation is shared any more: presence is no longer told (docs/api.md), so it is not known.
  return withThread({ ...state, conversations, timers, presence: forget(state.presence, peer) }, peer, (t) => ({
    ...t, entries: t.entries.filter((e) => e.id === null), hasMore: false, peerReadUpTo: 0, clearedBy: peer,
  }));
}

function person(state: State, action: Extract<Action, { type: "person" }>): State {
  const name = action.user.username;
  const people = { ...state.people, [name]: action.user };
  // A presence frame told after the lookup was asked is newer than its answer.
  if ((state.presenceAt[name] ?? -1) > action.asOf) return { ...state, people };
  return { ...state, people, presence: { ...state.presence, [name]: action.online } };
}

/** The one place state changes; every action is a frame, an answer from the server, or the person's doing. */
export function reduce(state: State, action: Action): State {
  switch (action.type) {
    case "me":
      return action.user ? { ...state, me: action.user, ended: null }
        : { ...initialState, connection: state.connection, ended: action.ended ?? null };
    case "conversations":
      return seen({ ...state, conversations: conversationsFrom(action.list), people: peopleFrom(action.list, state.people),
                    lastId: lastIdOf(action.list, state.lastId), timers: timersFrom(action.list, state.timers), list: "ready" });
    case "listFailed":
      return { ...state, list: { error: action.error } };
    case "open":
      return open(state, action.with);
    case "visible":
      return seen({ ...state, visible: action.visible });
    case "historyLoading":
      return withThread(state, action.with, (t) => ({ ...t, loading: true, error: null }));
    case "historyFailed":
      return withThread(state, action.with, (t) => ({ ...t, loading: false, error: action.error }));
    case "history":
      return loaded(state, action);
    case "pending":
      return withThread(state, action.entry.to, (t) => ({ ...t, entries: [...t.entries, action.entry], clearedBy: undefined }));
    case "ack":
    case "message":
      return { ...receive(state, action.message), clock: measured(state.clock, action.message, action.at) };
    case "failed":
      return Object.keys(state.threads).reduce((s, peer) => withThread(s, peer, (t) => ({
        ...t, entries: t.entries.map((e) => e.id === null && e.client_id === action.client_id ? { ...e, failed: action.reason } : e),
      })), state);
    // A retried send whose message was deleted or expired meanwhile (410 `gone`): it was delivered,
    // and is gone as it should be; nothing is left to send or to show.
    case "dropped":
      return Object.keys(state.threads).reduce((s, peer) => removeEntries(s, peer,
        (e) => e.id === null && e.client_id === action.client_id), state);
    // Receipts and typing come only from a connected client: the peer is online.
    case "read":
      return withThread(told(state, action.by, true), action.by, (t) => ({ ...t, peerReadUpTo: Math.max(t.peerReadUpTo, action.up_to) }));
    case "typing":
      return { ...told(state, action.from, true), typingUntil: { ...state.typingUntil, [action.from]: action.until } };
    case "presence":
      return told(state, action.user, action.online);
    case "person":
      return person(state, action);
    case "profile": {
      const mine = state.me?.username === action.user.username;
      return { ...state, me: mine ? action.user : state.me, people: { ...state.people, [action.user.username]: action.user } };
    }
    case "cleared":
      return cleared(state, action.with);
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
    case "blocks":
    case "blocksFailed":
    case "block":
    case "unblock":
    case "refusedBlocked": {
      const blocks = changeBlocks(state.blocks, action);
      return blocks === state.blocks ? state : { ...state, blocks };
    }
    default: {
      const views = changeView(state.views, action);
      return views === state.views ? state : { ...state, views };
    }
  }
}

/** Unread messages over every conversation: the tab's title counts them. */
export function unreadTotal(state: State): number {
  return Object.values(state.conversations).reduce((sum, meta) => sum + meta.unread, 0);
}

/** Sends still waiting for the server, over every conversation: the reconnect banner counts them. */
export function pendingTotal(state: State): number {
  return Object.values(state.threads).reduce((sum, t) => sum + t.entries.filter((e) => e.id === null && !e.failed).length, 0);
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

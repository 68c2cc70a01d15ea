// The client's one controller: owns the store and, while someone is logged in, the socket; turns
// what the person does into requests and what the server says into actions. Not React: the shell
// calls its methods (stable, so memoised components keep them) and reads the store by selectors.
import { api, ApiError, CANCELLED, explain, upload, type FileInfo, type Message, type User } from "../lib/api";
import { Attention, browserNotifier, browserPage, webAudioTone, type Notifier } from "../lib/attention";
import { Blocking } from "../lib/blocking";
import { blockOf } from "../lib/blocks";
import { Clock } from "../lib/clock";
import { Prefs } from "../lib/prefs";
import { Session } from "../lib/session";
import { ChatSocket } from "../lib/socket";
import { expireOnTick, hasExpiring, peerOf, Store, type State } from "../lib/store";
import type { ScrollPlace } from "../lib/views";

function socketUrl(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/chat/`;
}

/** Usernames as the server folds them (near enough: it also applies NFKC). */
export function foldUsername(name: string): string {
  return name.normalize("NFKC").trim().toLowerCase();
}

export class ChatClient {
  readonly store = new Store();
  readonly clock = new Clock();
  readonly prefs = new Prefs(localStorage);
  readonly notifier: Notifier = browserNotifier();
  readonly session = new Session(this.store, localStorage, api);
  readonly blocking = new Blocking(this.store, api);
  private readonly tone = webAudioTone();
  private readonly attention: Attention;
  private socket: ChatSocket | null = null;
  private readonly uploads = new Map<string, AbortController>();
  private readonly paging = new Set<string>();
  private readonly lookedUp = new Set<string>();  // peers whose presence was asked on this connection
  private stopSession: (() => void) | null = null;

  constructor(openChat: (peer: string) => void) {
    this.attention = new Attention(this.store, this.prefs, this.notifier, browserPage(), this.tone.play, openChat);
  }

  /** Connect for the logged-in user: the list first, then the socket, title and clock. Returns the stop. */
  start = (): (() => void) => {
    const socket = new ChatSocket({
      url: socketUrl(), getState: this.store.getState, dispatch: this.store.dispatch, isOnline: () => navigator.onLine,
      onResync: () => { void this.loadConversations(); void this.blocking.load(); this.reloadOpen(); },
      onDeleted: () => void this.loadConversations(),  // previews and unread counts, as the server now counts them
      onUnauthenticated: this.session.closedByServer,
      onBlocked: (peer) => void this.blocking.refused(peer),
      onMessage: this.arrived,
    });
    this.socket = socket;
    const stops = [this.attention.start(), this.tickWhileExpiring(), this.watchNetwork(socket), this.unlockTone(),
                   this.blocking.reloadWhenShown()];
    let stopped = false;
    // The socket's first `sync` starts after the list's newest message: started before the list,
    // it would replay every message ever exchanged (and page in history the user never asked for).
    void this.loadConversations().finally(() => { if (!stopped) socket.start(); });
    void this.blocking.load();
    this.stopSession = () => {
      stopped = true;
      stops.forEach((stop) => stop());
      socket.stop();
      this.uploads.forEach((upload) => upload.abort());
      this.uploads.clear();
      this.socket = null;
    };
    return this.stop;
  };

  stop = (): void => {
    this.stopSession?.();
    this.stopSession = null;
  };

  private watchNetwork(socket: ChatSocket): () => void {
    const offline = () => socket.drop();
    const online = () => socket.reconnectNow();
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    return () => {
      window.removeEventListener("offline", offline);
      window.removeEventListener("online", online);
    };
  }

  private unlockTone(): () => void {
    const unlock = () => { if (this.prefs.get().sound) this.tone.unlock(); };
    window.addEventListener("pointerdown", unlock);
    window.addEventListener("keydown", unlock);
    return () => {
      window.removeEventListener("pointerdown", unlock);
      window.removeEventListener("keydown", unlock);
    };
  }

  /** The clock ticks only while a message shown can expire; each tick drops the expired ones. */
  private tickWhileExpiring(): () => void {
    let threads: State["threads"] | null = null;
    let conversations: State["conversations"] | null = null;
    let stopTicking: (() => void) | null = null;
    const check = () => {
      const state = this.store.getState();
      if (state.threads === threads && state.conversations === conversations) return;
      ({ threads, conversations } = state);
      const expiring = hasExpiring(state);
      if (expiring && !stopTicking) stopTicking = expireOnTick(this.clock, this.store);
      if (!expiring && stopTicking) { stopTicking(); stopTicking = null; }
    };
    const unsubscribe = this.store.subscribe(check);
    check();
    return () => { unsubscribe(); stopTicking?.(); };
  }

  /** Before the store has a message: tell the person if it is new to them, and learn the
   *  presence and profile of a peer the client knows nothing of (a conversation just begun). */
  private arrived = (message: Message, kind: "ack" | "chat"): void => {
    const state = this.store.getState();
    const me = state.me?.username ?? "";
    const peer = peerOf(me, message);
    if (kind === "chat" && message.from !== me && message.id > state.lastId) this.attention.incoming(message);
    // A conversation's first message makes the two partners: only now is presence told (docs/api.md).
    const begun = !state.conversations[peer];
    if (begun || (!(peer in state.presence) && !this.lookedUp.has(peer))) {
      this.lookedUp.add(peer);
      queueMicrotask(() => void this.lookUp(peer).catch(() => this.lookedUp.delete(peer)));
    }
  };

  loadConversations = async (): Promise<void> => {
    try {
      this.store.dispatch({ type: "conversations", list: (await api.conversations()).conversations });
    } catch (error) {
      this.store.dispatch({ type: "listFailed", error: explain(error, "Your conversations could not be loaded") });
    }
  };

  /** Someone's public profile and, if they share a conversation, whether they are online. */
  lookUp = async (username: string): Promise<User> => {
    const asOf = this.store.getState().presences;
    const { user, online } = await api.person(username);
    this.store.dispatch({ type: "person", user, online, asOf });
    return user;
  };

  /** Check a username before a chat with it is opened; the problem to show, or null when it may be. */
  findPerson = async (name: string): Promise<string | null> => {
    const username = foldUsername(name);
    const state = this.store.getState();
    if (!username) return "Type the username of the person to talk to.";
    if (username === state.me?.username) return `“${username}” is you. Type the username of someone else.`;
    if (state.conversations[username] || state.people[username]) return null;
    try {
      await this.lookUp(username);
      return null;
    } catch (error) {
      if (error instanceof ApiError && error.code === "unknown_user") {
        return `Nobody has the username “${username}”. Check the spelling, or ask them for their username.`;
      }
      return explain(error, `“${username}” could not be checked`);
    }
  };

  /** Show a conversation (or none): its history and timer load if they are not here yet. */
  show = (peer: string | null): void => {
    this.store.dispatch({ type: "open", with: peer });
    if (!peer) return;
    void this.loadHistory(peer, false);
    void this.loadTimer(peer).catch(() => undefined);  // the list says how long; the dialog asks again
  };

  private reloadOpen(): void {
    const peer = this.store.getState().open;
    if (peer) void this.loadHistory(peer, false);
  }

  loadHistory = async (peer: string, older: boolean): Promise<void> => {
    const thread = this.store.getState().threads[peer];
    const oldest = thread?.entries.find((e) => e.id !== null)?.id ?? undefined;
    if ((!older && thread?.loaded) || this.paging.has(peer)) return;
    this.paging.add(peer);
    this.store.dispatch({ type: "historyLoading", with: peer });
    try {
      const page = await api.history(peer, older ? oldest : undefined);
      this.store.dispatch({ type: "history", with: peer, messages: page.messages, hasMore: page.has_more, older });
    } catch (error) {
      this.store.dispatch({ type: "historyFailed", with: peer, error: explain(error, "The messages could not be loaded") });
    } finally {
      this.paging.delete(peer);
    }
  };

  setDraft = (peer: string, text: string): void => {
    this.store.dispatch({ type: "draft", with: peer, text });
    const state = this.store.getState();
    if (text && !blockOf(state.blocks, peer) && state.threads[peer]?.entries.some((e) => e.id !== null)) this.socket?.typing(peer);
  };

  /** A file picked, pasted or dropped: shown with a preview until it is sent or removed. */
  stage = (peer: string, file: File): void => {
    this.unstage(peer);
    const preview = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    this.store.dispatch({ type: "staged", with: peer, staged: { file, preview } });
    this.store.dispatch({ type: "problem", with: peer, problem: null });
  };

  unstage = (peer: string): void => {
    const staged = this.store.getState().views[peer]?.staged;
    if (staged?.preview) URL.revokeObjectURL(staged.preview);
    if (staged) this.store.dispatch({ type: "staged", with: peer, staged: null });
  };

  dismissProblem = (peer: string): void => this.store.dispatch({ type: "problem", with: peer, problem: null });

  /** Send what the composer holds: its text, or the staged file with the text as its caption. */
  send = async (peer: string): Promise<void> => {
    const view = this.store.getState().views[peer];
    const text = view?.draft ?? "";
    const staged = view?.staged ?? null;
    if (!this.socket || (staged ? view?.upload : !text.trim())) return;  // one upload at a time; text may go meanwhile
    this.store.dispatch({ type: "draft", with: peer, text: "" });
    if (!staged) {
      this.socket.send(peer, text);
      return;
    }
    this.store.dispatch({ type: "staged", with: peer, staged: null });
    const file = await this.uploadFor(peer, staged.file);
    if (file) {
      this.socket?.send(peer, text, file);
      if (staged.preview) URL.revokeObjectURL(staged.preview);
    } else {  // failed or cancelled: the file and its caption come back, to send again or remove
      this.store.dispatch({ type: "staged", with: peer, staged });
      if (!this.store.getState().views[peer]?.draft) this.store.dispatch({ type: "draft", with: peer, text });
    }
  };

  private async uploadFor(peer: string, file: File): Promise<FileInfo | null> {
    const controller = new AbortController();
    this.uploads.set(peer, controller);
    const progress = (fraction: number) =>
      this.store.dispatch({ type: "upload", with: peer, upload: { name: file.name, size: file.size, fraction } });
    progress(0);
    this.store.dispatch({ type: "problem", with: peer, problem: null });
    try {
      return await upload(file, "attachment", progress, controller.signal);
    } catch (error) {
      if (!(error instanceof ApiError && error.code === CANCELLED)) {
        this.store.dispatch({ type: "problem", with: peer, problem: explain(error, `“${file.name}” was not sent`) });
      }
      return null;
    } finally {
      this.uploads.delete(peer);
      this.store.dispatch({ type: "upload", with: peer, upload: null });
    }
  }

  cancelUpload = (peer: string): void => this.uploads.get(peer)?.abort();

  read = (peer: string, upTo: number): void => {
    if (!blockOf(this.store.getState().blocks, peer)) this.socket?.read(peer, upTo);  // nothing passes a block
  };

  reconnect = (): void => this.socket?.reconnectNow();

  savePlace = (peer: string, place: ScrollPlace | null): void => this.store.dispatch({ type: "place", with: peer, place });

  loadTimer = async (peer: string): Promise<void> => {
    const timer = await api.timer(peer);
    this.store.dispatch({ type: "timer", with: timer.with, seconds: timer.seconds, by: timer.set_by, at: timer.set_at });
  };

  setTimer = async (peer: string, seconds: number): Promise<void> => {
    const timer = await this.blocking.guard(peer, api.setTimer(peer, seconds));
    this.store.dispatch({ type: "timer", with: timer.with, seconds: timer.seconds, by: timer.set_by, at: timer.set_at });
  };

  /** Delete for everyone; a message already gone (expired, deleted by the peer) is 404 and goes here too. */
  deleteMessage = async (peer: string, id: number): Promise<void> => {
    try {
      await this.blocking.guard(peer, api.deleteMessage(id));
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "not_found")) throw new Error(explain(error, "The message was not deleted"));
    }
    this.store.dispatch({ type: "deleted", with: peer, ids: [id] });
  };

  /** The other sessions end at once (the server revokes them); this one stays. */
  changePhrase = async (phrase: string, newPhrase: string): Promise<void> => {
    this.store.dispatch({ type: "me", user: (await api.changePhrase(phrase, newPhrase)).user });
  };

  setDisplayName = async (name: string): Promise<void> => {
    this.store.dispatch({ type: "me", user: (await api.setDisplayName(name)).user });
  };

  setAvatar = async (file: File, onProgress: (fraction: number) => void): Promise<void> => {
    await upload(file, "avatar", onProgress);
    this.store.dispatch({ type: "me", user: (await api.profile()).user });
  };

  enableNotifications = async (): Promise<void> => {
    const permission = await this.notifier.request();
    if (permission === "granted") this.prefs.set({ notify: true });
  };

  setSound = (on: boolean): void => {
    if (on) this.tone.unlock();  // a click: the browser lets the page start audio now
    this.prefs.set({ sound: on });
  };
}

import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { api, ApiError, type Timer, type User } from "../lib/api";
import { Clock } from "../lib/clock";
import { ChatSocket } from "../lib/socket";
import { expireOnTick, hasExpiring, Store } from "../lib/store";

// Not a secret, only a hint that a session cookie may exist: without it the first
// screen is the login form at once, with no profile request that can only answer 401.
const SESSION_HINT = "secure-link:session";

function remember(user: User | null): void {
  if (user) localStorage.setItem(SESSION_HINT, "1");
  else localStorage.removeItem(SESSION_HINT);
}

function socketUrl(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/chat/`;
}

/** Owns the store and, while someone is logged in, the socket; wires the network events to it. */
export function useChat() {
  const [store] = useState(() => new Store());
  const [clock] = useState(() => new Clock());
  const state = useSyncExternalStore(store.subscribe, store.getState);
  const expiring = hasExpiring(state);
  const [socket, setSocket] = useState<ChatSocket | null>(null);
  const [checked, setChecked] = useState(false);
  const loggedIn = state.me !== null;
  const paging = useRef(new Set<string>());
  const reopen = useRef<() => void>(() => undefined);  // reloads the open thread after `resync`

  useEffect(() => {
    if (!localStorage.getItem(SESSION_HINT)) return setChecked(true);
    api.profile().then(({ user }) => store.dispatch({ type: "me", user }), () => remember(null))
      .finally(() => setChecked(true));
  }, [store]);

  useEffect(() => {
    if (!loggedIn) return;
    const reload = () => api.conversations().then(
      ({ conversations }) => store.dispatch({ type: "conversations", list: conversations }), () => undefined);
    const chat = new ChatSocket({ url: socketUrl(), getState: store.getState, dispatch: store.dispatch,
                                  isOnline: () => navigator.onLine,
                                  onResync: () => { void reload(); reopen.current(); },
                                  onDeleted: () => void reload(),  // previews and unread counts, as the server now counts them
                                  onUnauthenticated: () => { remember(null); store.dispatch({ type: "me", user: null }); } });
    const offline = () => chat.drop();
    const online = () => chat.reconnectNow();
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    let stopped = false;
    // The socket's first `sync` starts after the list's newest message: started before the list,
    // it would replay every message ever exchanged (and page in history the user never asked for).
    void reload().finally(() => { if (!stopped) chat.start(); });
    setSocket(chat);
    return () => {
      stopped = true;
      window.removeEventListener("offline", offline);
      window.removeEventListener("online", online);
      chat.stop();
      setSocket(null);
    };
  }, [loggedIn, store]);

  const loadHistory = useCallback(async (peer: string, older: boolean) => {
    const thread = store.getState().threads[peer];
    const oldest = thread?.entries.find((e) => e.id !== null)?.id ?? undefined;
    if ((!older && thread?.loaded) || paging.current.has(peer)) return;
    paging.current.add(peer);
    const page = await api.history(peer, older ? oldest : undefined).catch(() => null);
    paging.current.delete(peer);
    if (page) store.dispatch({ type: "history", with: peer, messages: page.messages, hasMore: page.has_more, older });
  }, [store]);

  // The clock ticks only while a message shown can expire; each tick drops the expired ones.
  useEffect(() => (expiring ? expireOnTick(clock, store) : undefined), [expiring, clock, store]);

  const applyTimer = useCallback((timer: Timer) => store.dispatch({
    type: "timer", with: timer.with, seconds: timer.seconds, by: timer.set_by, at: timer.set_at,
  }), [store]);

  const loadTimer = useCallback(async (peer: string) => applyTimer(await api.timer(peer)), [applyTimer]);

  const setTimer = useCallback(async (peer: string, seconds: number) => applyTimer(await api.setTimer(peer, seconds)),
                               [applyTimer]);

  /** Delete for everyone; a message already gone (expired, deleted by the peer) is 404 and goes here too. */
  const deleteMessage = useCallback(async (peer: string, id: number) => {
    try {
      await api.deleteMessage(id);
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "not_found")) throw error;
    }
    store.dispatch({ type: "deleted", with: peer, ids: [id] });
  }, [store]);

  useEffect(() => {
    reopen.current = () => {
      const peer = store.getState().open;
      if (peer) void loadHistory(peer, false);
    };
  }, [store, loadHistory]);

  const signIn = useCallback((user: User) => {
    remember(user);
    store.dispatch({ type: "me", user });
  }, [store]);

  const logOut = useCallback(async () => {
    await api.logout();
    remember(null);
    store.dispatch({ type: "me", user: null });
  }, [store]);

  const refreshProfile = useCallback(async () => {
    const { user } = await api.profile();
    store.dispatch({ type: "me", user });
  }, [store]);

  return { state, store, socket, clock, checked, loadHistory, loadTimer, setTimer, deleteMessage, signIn, logOut,
           refreshProfile };
}

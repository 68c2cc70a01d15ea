import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { api, type User } from "../lib/api";
import { ChatSocket } from "../lib/socket";
import { Store } from "../lib/store";

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
  const state = useSyncExternalStore(store.subscribe, store.getState);
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
                                  onUnauthenticated: () => { remember(null); store.dispatch({ type: "me", user: null }); } });
    const offline = () => chat.drop();
    const online = () => chat.reconnectNow();
    window.addEventListener("offline", offline);
    window.addEventListener("online", online);
    setSocket(chat);
    // The socket syncs from the newest id the list names. Started before the list is in, its
    // `sync` would often ask from 0: every message replayed, and counted unread once more.
    let ended = false;
    void reload().then(() => ended || chat.start());
    return () => {
      ended = true;
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

  return { state, store, socket, checked, loadHistory, signIn, logOut, refreshProfile };
}

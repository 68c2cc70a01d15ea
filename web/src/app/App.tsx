import { useCallback, useEffect, useState } from "react";
import { AttachButton, AttachmentView } from "../features/attachments";
import { AuthForm } from "../features/auth";
import { ChatView } from "../features/chat";
import { ConversationList } from "../features/conversations";
import { AccountPanel, LogoutButton } from "../features/sessions";
import { TimerControl, TimerNotice } from "../features/timers";
import type { FileInfo } from "../lib/api";
import { emptyThread, timerOff, type State } from "../lib/store";
import { useChat } from "./useChat";

type Panel = "chat" | "account";

const CONNECTION_TEXT: Record<State["connection"], string> = {
  connecting: "Connecting…", online: "Connected", offline: "Offline: messages wait to be sent",
};

/** Renders again when the soonest typing indicator runs out, so it disappears on time. */
function useTypingExpiry(typingUntil: Record<string, number>): void {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const current = Date.now();
    const soonest = Math.min(...Object.values(typingUntil).filter((t) => t > current));
    if (!Number.isFinite(soonest)) return;
    const timer = setTimeout(() => setNow(Date.now()), soonest - current + 10);
    return () => clearTimeout(timer);
  }, [typingUntil, now]);
}

/** The shell: the login screen, or the conversation list beside the open chat (one at a time on a phone). */
export function App() {
  const { state, store, socket, clock, checked, loadHistory, loadTimer, setTimer, deleteMessage, signIn, logOut,
          refreshProfile } = useChat();
  const [panel, setPanel] = useState<Panel>("chat");
  useTypingExpiry(state.typingUntil);
  const me = state.me;
  const peer = state.open;

  const open = useCallback((username: string | null) => {
    store.dispatch({ type: "open", with: username });
    setPanel("chat");
    if (!username) return;
    void loadHistory(username, false);
    loadTimer(username).catch(() => undefined);  // who set it, and when: the list says only how long
  }, [store, loadHistory, loadTimer]);
  const read = useCallback((upTo: number) => peer && socket?.read(peer, upTo), [socket, peer]);

  if (!checked) return null;
  if (!me) return <AuthForm onAuthenticated={signIn} />;

  const conversations = Object.values(state.conversations)
    .sort((a, b) => (b.last?.id ?? Infinity) - (a.last?.id ?? Infinity));
  const send = (text: string, file?: FileInfo) => peer && socket?.send(peer, text, file);
  const thread = peer ? state.threads[peer] ?? emptyThread : undefined;
  const timer = peer ? state.timers[peer] ?? timerOff : timerOff;

  return (
    <div className="shell" data-view={peer || panel === "account" ? "detail" : "list"}>
      <header className="top">
        <h1>Secure Link</h1>
        <span role="status" className={`connection ${state.connection}`}>{CONNECTION_TEXT[state.connection]}</span>
        <button type="button" className="secondary" onClick={() => setPanel("account")}>Account</button>
        <LogoutButton onConfirm={logOut} />
      </header>
      <ConversationList conversations={conversations} presence={state.presence} open={peer} me={me.username} onOpen={open} />
      <main className="detail">
        {panel === "account" ? (
          <AccountPanel me={me} onClose={() => setPanel("chat")} avatarControl={
            <AttachButton label="Change avatar" purpose="avatar" accept="image/*"
                          onUploaded={refreshProfile} />} />
        ) : peer && thread ? (
          <ChatView peer={peer} me={me.username} thread={thread} online={state.presence[peer] ?? false}
                    typing={(state.typingUntil[peer] ?? 0) > Date.now()} onSend={(text) => send(text)}
                    onTyping={() => thread.entries.some((e) => e.id !== null) && socket?.typing(peer)}
                    onRead={read} onLoadOlder={() => loadHistory(peer, true)} onBack={() => open(null)}
                    onDelete={(id) => deleteMessage(peer, id)} clock={clock} clockOffset={state.clock.offset}
                    timerControl={<TimerControl setting={timer} me={me.username} onOpen={() => loadTimer(peer)}
                                                onSave={(seconds) => setTimer(peer, seconds)} />}
                    timerNotice={<TimerNotice setting={timer} me={me.username} />}
                    renderAttachment={(file) => <AttachmentView file={file} />}
                    attachControl={<AttachButton label="Attach" purpose="attachment" onUploaded={(file) => send("", file)} />} />
        ) : (
          <p className="placeholder">Pick a conversation, or start one with a username.</p>
        )}
      </main>
    </div>
  );
}

import { useEffect, useLayoutEffect, useRef, useState, type ReactNode, type RefObject } from "react";
import { formatTime } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import type { Clock } from "../../../lib/clock";
import type { Entry, Thread } from "../../../lib/store";
import { Composer } from "./Composer";
import { Countdown } from "./Countdown";
import { DeleteDialog } from "./DeleteDialog";

interface ChatViewProps {
  peer: string;
  me: string;
  thread: Thread;
  online: boolean;
  typing: boolean;
  onSend: (text: string) => void;
  onTyping: () => void;
  onRead: (upTo: number) => void;
  onLoadOlder: () => void;
  onBack: () => void;
  onDelete: (id: number) => Promise<void>;
  renderAttachment: (file: FileInfo) => ReactNode;
  attachControl: ReactNode;
  timerControl: ReactNode;
  timerNotice: ReactNode;
  clock: Clock;
  clockOffset: number;
}

function status(entry: Entry, readUpTo: number): string {
  if (entry.failed) return `Not sent: ${entry.failed}`;
  if (entry.id === null) return "Sending…";
  return entry.id <= readUpTo ? "Read" : "Sent";
}

/** Keeps the view at the newest message while the reader is there, and in place when
 *  older messages page in above or new ones arrive while they read back. */
function useScrollKeeper(list: RefObject<HTMLDivElement | null>, entries: Entry[]) {
  const previous = useRef({ height: 0, first: null as number | null, count: 0 });
  useLayoutEffect(() => {
    const element = list.current;
    if (!element) return;
    const before = previous.current;
    const first = entries[0]?.id ?? null;
    const prepended = before.count > 0 && first !== before.first && entries.length > before.count;
    const wasAtBottom = before.height - element.scrollTop - element.clientHeight < 80;
    if (prepended) element.scrollTop += element.scrollHeight - before.height;
    else if (wasAtBottom || before.count === 0) element.scrollTop = element.scrollHeight;
    previous.current = { height: element.scrollHeight, first, count: entries.length };
  }, [list, entries]);
}

/** Sends a receipt for the newest message from the peer whenever it is on screen. */
function useReadReceipts(newestFromPeer: number, onRead: (upTo: number) => void) {
  useEffect(() => {
    const send = () => newestFromPeer > 0 && document.visibilityState === "visible" && onRead(newestFromPeer);
    send();
    document.addEventListener("visibilitychange", send);
    return () => document.removeEventListener("visibilitychange", send);
  }, [newestFromPeer, onRead]);
}

/** The message being confirmed for deletion, let go of when it disappears meanwhile (expired, or deleted by the peer). */
function useDeleteTarget(entries: Entry[]) {
  const [target, setTarget] = useState<Entry | null>(null);
  const present = target !== null && entries.some((e) => e.id === target.id);
  return [present ? target : null, setTarget] as const;
}

/** One conversation: its history (paged in when scrolled to the top), live messages, and the composer. */
export function ChatView(props: ChatViewProps) {
  const { peer, me, thread, online, typing, onRead, onLoadOlder } = props;
  const list = useRef<HTMLDivElement>(null);
  const [deleting, setDeleting] = useDeleteTarget(thread.entries);
  useScrollKeeper(list, thread.entries);
  const newestFromPeer = thread.entries.reduce((max, e) => (e.from === peer && e.id !== null ? Math.max(max, e.id) : max), 0);
  const lastMine = [...thread.entries].reverse().find((e) => e.from === me);

  useReadReceipts(newestFromPeer, onRead);

  function scrolled() {
    if (list.current && list.current.scrollTop < 40 && thread.hasMore) onLoadOlder();
  }

  return (
    <section className="chat" aria-labelledby="chat-title">
      <header>
        <button type="button" className="back secondary" onClick={props.onBack} aria-label="Back to conversations">←</button>
        <h2 id="chat-title">{peer}</h2>
        <span className={online ? "presence online" : "presence"}>{online ? "online" : "offline"}</span>
        {props.timerControl}
      </header>
      {props.timerNotice}
      <div className="messages" role="log" aria-label={`Messages with ${peer}`} ref={list} onScroll={scrolled} tabIndex={0}>
      <ol>
        {thread.hasMore && <li className="more"><button type="button" className="link" onClick={onLoadOlder}>Show older messages</button></li>}
        {thread.clearedBy && <li className="notice">This conversation was erased by a logout.</li>}
        {thread.entries.map((entry) => (
          <li key={entry.id ?? entry.client_id} className={entry.from === me ? "mine" : "theirs"}
              data-id={entry.id ?? undefined} aria-busy={entry.id === null ? true : undefined}>
            <span className="visually-hidden">{entry.from === me ? "You" : entry.from}: </span>
            {entry.attachment && props.renderAttachment(entry.attachment)}
            {entry.message && <p>{entry.message}</p>}
            <span className="meta">
              {formatTime(entry.sent_at)}
              {entry.from === me && (entry === lastMine || entry.id === null || entry.failed) &&
                <span className="status"> · {status(entry, thread.peerReadUpTo)}</span>}
              {entry.expires_at && <> · <Countdown expiresAt={entry.expires_at} clock={props.clock} clockOffset={props.clockOffset} /></>}
              {entry.id !== null &&
                <> · <button type="button" className="link delete" aria-haspopup="dialog" onClick={() => setDeleting(entry)}>Delete</button></>}
            </span>
          </li>
        ))}
      </ol>
      </div>
      <p className="typing" aria-live="polite">{typing ? `${peer} is typing…` : ""}</p>
      <Composer onSend={props.onSend} onTyping={props.onTyping} attachControl={props.attachControl} />
      <DeleteDialog peer={peer} entry={deleting} onConfirm={props.onDelete} onClose={() => setDeleting(null)}
                    onDeleted={() => list.current?.focus()} />
    </section>
  );
}

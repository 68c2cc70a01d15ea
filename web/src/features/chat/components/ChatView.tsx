import { useCallback, useEffect, useRef, useState, type DragEvent, type ReactNode } from "react";
import { Avatar } from "../../../components/Avatar";
import type { FileInfo } from "../../../lib/api";
import type { Clock } from "../../../lib/clock";
import type { Entry } from "../../../lib/entries";
import { emptyThread } from "../../../lib/store";
import { useSelector } from "../../../lib/useStore";
import type { ScrollPlace } from "../../../lib/views";
import { DeleteDialog } from "./DeleteDialog";
import { MessageList } from "./MessageList";

interface ChatViewProps {
  peer: string;
  me: string;
  clock: Clock;
  onBack: () => void;
  onRead: (peer: string, upTo: number) => void;
  onLoad: (peer: string, older: boolean) => void;
  onDelete: (peer: string, id: number) => Promise<void>;
  onFiles: (peer: string, files: File[]) => void;
  onSavePlace: (peer: string, place: ScrollPlace) => void;
  renderAttachment: (file: FileInfo) => ReactNode;
  timerControl: ReactNode;
  blockControl: ReactNode;
  timerNotice: ReactNode;
  composer: ReactNode;
}

/** Sends a receipt for the newest message from the peer whenever it is on screen. */
function useReadReceipts(peer: string, newestFromPeer: number, visible: boolean, onRead: (peer: string, upTo: number) => void) {
  useEffect(() => {
    if (newestFromPeer > 0 && visible) onRead(peer, newestFromPeer);
  }, [peer, newestFromPeer, visible, onRead]);
}

/** Renders again when the peer's typing indicator runs out, so it disappears on time. */
function useTyping(peer: string): boolean {
  const until = useSelector((state) => state.typingUntil[peer] ?? 0);
  const [, setNow] = useState(0);
  useEffect(() => {
    const left = until - Date.now();
    if (left <= 0) return;
    const timer = setTimeout(() => setNow(Date.now()), left + 10);
    return () => clearTimeout(timer);
  }, [until]);
  return until > Date.now();
}

/** The message being confirmed for deletion, let go of when it disappears meanwhile (expired, or deleted by the peer). */
function useDeleteTarget(entries: Entry[]) {
  const [target, setTarget] = useState<Entry | null>(null);
  const present = target !== null && entries.some((e) => e.id === target.id);
  return [present ? target : null, setTarget] as const;
}

function newestFrom(entries: Entry[], peer: string): number {
  for (let index = entries.length - 1; index >= 0; index -= 1) {
    const entry = entries[index];
    if (entry.from === peer && entry.id !== null) return entry.id;
  }
  return 0;
}

/** One conversation: its history (paged in when scrolled to the top), live messages, and the composer.
 *  A file dropped anywhere on it is staged to send. */
export function ChatView(props: ChatViewProps) {
  const { peer, me, onLoad, onDelete, onSavePlace } = props;
  const thread = useSelector((state) => state.threads[peer] ?? emptyThread);
  // Only what the list needs of the view: a key typed changes the draft, and must not render the list.
  const marker = useSelector((state) => state.views[peer]?.marker ?? null);
  const saved = useSelector((state) => state.views[peer]?.place ?? null);
  const person = useSelector((state) => state.people[peer]);
  const online = useSelector((state) => state.presence[peer] ?? false);
  const visible = useSelector((state) => state.visible);
  const clockOffset = useSelector((state) => state.clock.offset);
  const typing = useTyping(peer);
  const list = useRef<HTMLDivElement>(null);
  const [deleting, setDeleting] = useDeleteTarget(thread.entries);
  const [dragging, setDragging] = useState(false);
  useReadReceipts(peer, newestFrom(thread.entries, peer), visible && thread.loaded, props.onRead);

  const loadOlder = useCallback(() => onLoad(peer, true), [onLoad, peer]);
  const retry = useCallback(() => onLoad(peer, thread.loaded), [onLoad, peer, thread.loaded]);
  const savePlace = useCallback((place: ScrollPlace) => onSavePlace(peer, place), [onSavePlace, peer]);
  const confirmDelete = useCallback((id: number) => onDelete(peer, id), [onDelete, peer]);
  const name = person?.display_name && person.display_name !== peer ? person.display_name : null;

  function dropped(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    const files = Array.from(event.dataTransfer.files);
    if (files.length) props.onFiles(peer, files);
  }

  function dragOver(event: DragEvent) {
    if (!event.dataTransfer.types.includes("Files")) return;
    event.preventDefault();
    setDragging(true);
  }

  return (
    <section className="chat" aria-labelledby="chat-title" onDragOver={dragOver} onDrop={dropped}
             onDragLeave={(event) => event.currentTarget === event.target && setDragging(false)}>
      <header>
        <button type="button" className="back secondary" onClick={props.onBack} aria-label="Back to conversations">←</button>
        <Avatar name={name ?? peer} url={person?.avatar_url} />
        <h2 id="chat-title">{name ?? peer}{name && <span className="handle"> ({peer})</span>}</h2>
        <span className={online ? "presence online" : "presence"}>{online ? "online" : "offline"}</span>
        <span className="chat-actions">{props.timerControl}{props.blockControl}</span>
      </header>
      {props.timerNotice}
      <MessageList peer={peer} me={me} thread={thread} marker={marker} saved={saved}
                   clock={props.clock} clockOffset={clockOffset} onLoadOlder={loadOlder} onRetry={retry}
                   onDelete={setDeleting} onSavePlace={savePlace} renderAttachment={props.renderAttachment} listRef={list} />
      <p className="typing" aria-live="polite">{typing ? `${peer} is typing…` : ""}</p>
      {props.composer}
      {dragging && <div className="drop-hint" aria-hidden="true">Drop a file to send it to {name ?? peer}</div>}
      <DeleteDialog peer={peer} entry={deleting} onConfirm={confirmDelete} onClose={() => setDeleting(null)}
                    onDeleted={() => list.current?.focus()} />
    </section>
  );
}

import { Fragment, memo, type ReactNode, type RefObject } from "react";
import { dayKey, formatDay } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import type { Clock } from "../../../lib/clock";
import { entryKey, type Entry } from "../../../lib/entries";
import type { Thread } from "../../../lib/store";
import type { ScrollPlace } from "../../../lib/views";
import { useWindow } from "../useWindow";
import { MessageRow } from "./MessageRow";

interface MessageListProps {
  peer: string;
  me: string;
  thread: Thread;
  marker: number | null;
  saved: ScrollPlace | null;
  clock: Clock;
  clockOffset: number;
  onLoadOlder: () => void;
  onRetry: () => void;
  onDelete: (entry: Entry) => void;
  onSavePlace: (place: ScrollPlace) => void;
  renderAttachment: (file: FileInfo) => ReactNode;
  listRef: RefObject<HTMLDivElement | null>;
}

function status(entry: Entry, readUpTo: number): string {
  if (entry.failed) return `Not sent: ${entry.failed}`;
  if (entry.id === null) return "Sending…";
  return entry.id <= readUpTo ? "Read" : "Sent";
}

function lastOf(entries: Entry[], test: (entry: Entry) => boolean): Entry | undefined {
  for (let index = entries.length - 1; index >= 0; index -= 1) if (test(entries[index])) return entries[index];
  return undefined;
}

/** The conversation's messages, windowed (useWindow.ts): held in place while the reader reads back,
 *  following the newest while they are at the bottom, with day separators and "New messages". */
export const MessageList = memo(function MessageList(props: MessageListProps) {
  const { peer, me, thread, marker, listRef: list, onLoadOlder } = props;
  const entries = thread.entries;
  const { span, following, newSince, scrolled, older, toNewest } = useWindow({
    list, thread, me, marker, saved: props.saved, onLoadOlder, onSavePlace: props.onSavePlace });
  const shown = entries.slice(span.start, span.end);
  const lastMine = lastOf(entries, (entry) => entry.from === me);
  const below = entries.length - span.end;
  const newBelow = entries.filter((entry) => entry.from === peer && entry.id !== null && entry.id > (newSince ?? Infinity)).length;

  return (
    <div className="messages-frame">
      {thread.error && (
        <div role="alert" className="load-error">
          <span>{thread.error}</span>
          <button type="button" className="secondary" onClick={props.onRetry}>Retry</button>
        </div>
      )}
      <div className="messages" role="log" aria-label={`Messages with ${peer}`} ref={list} onScroll={scrolled}
           tabIndex={0} aria-busy={thread.loading || undefined}>
        {thread.loading && entries.length === 0 && <p className="loading"><span className="spinner" aria-hidden="true" />Loading messages…</p>}
        <ol>
          {span.start === 0 && thread.hasMore && (
            <li className="more">
              {thread.loading ? <span className="loading"><span className="spinner" aria-hidden="true" />Loading older messages…</span>
                : <button type="button" className="link" onClick={onLoadOlder}>Show older messages</button>}
            </li>
          )}
          {span.start > 0 && (
            <li className="more"><button type="button" className="link" onClick={older}>Show older messages</button></li>
          )}
          {thread.clearedBy && <li className="notice">This conversation was erased by a logout or a deleted account.</li>}
          {thread.loaded && !thread.error && entries.length === 0 && !thread.clearedBy && (
            <li className="notice">No messages yet. Say hello to {peer}: your messages stay until either of you logs out.</li>
          )}
          {shown.map((entry, index) => {
            const previous = entries[span.start + index - 1];
            const day = dayKey(entry.sent_at);
            return (
              <Fragment key={entryKey(entry)}>
                {(!previous || dayKey(previous.sent_at) !== day) && (
                  <li className="day"><time dateTime={entry.sent_at.slice(0, 10)}>{formatDay(entry.sent_at)}</time></li>
                )}
                {marker !== null && entry.id === marker && <li className="unread-marker">New messages</li>}
                <MessageRow entry={entry} mine={entry.from === me}
                            status={entry.from === me && (entry === lastMine || entry.id === null || entry.failed)
                              ? status(entry, thread.peerReadUpTo) : null}
                            clock={props.clock} clockOffset={props.clockOffset} onDelete={props.onDelete}
                            renderAttachment={props.renderAttachment} />
              </Fragment>
            );
          })}
        </ol>
      </div>
      {(!following || below > 0) && entries.length > 0 && (
        <button type="button" className="to-newest" onClick={toNewest}
                aria-label={newBelow > 0 ? `Jump to the newest message, ${newBelow} new` : "Jump to the newest message"}>
          <span aria-hidden="true">↓</span>{newBelow > 0 && <span className="count" aria-hidden="true">{newBelow}</span>}
        </button>
      )}
    </div>
  );
});

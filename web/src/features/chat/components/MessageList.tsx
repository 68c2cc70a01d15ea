import { Fragment, memo, useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";
import { dayKey, formatDay } from "../../../components/format";
import type { FileInfo } from "../../../lib/api";
import type { Clock } from "../../../lib/clock";
import { entryKey, type Entry } from "../../../lib/entries";
import type { Thread } from "../../../lib/store";
import type { ScrollPlace } from "../../../lib/views";
import { around, following, growDown, growUp, hold, spanOf, type Place, type Span } from "../window";
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
  listRef: React.RefObject<HTMLDivElement | null>;
}

const EDGE_PX = 240;    // this close to an edge, more rows come in
const BOTTOM_PX = 48;   // this close to the bottom counts as reading the newest
const MARKER_ROOM_PX = 44;  // the first unread message opens this far down, below "New messages"

interface Anchor { key: string; offset: number }

function status(entry: Entry, readUpTo: number): string {
  if (entry.failed) return `Not sent: ${entry.failed}`;
  if (entry.id === null) return "Sending…";
  return entry.id <= readUpTo ? "Read" : "Sent";
}

function lastOf(entries: Entry[], test: (entry: Entry) => boolean): Entry | undefined {
  for (let index = entries.length - 1; index >= 0; index -= 1) if (test(entries[index])) return entries[index];
  return undefined;
}

function newestId(entries: Entry[]): number {
  return lastOf(entries, (entry) => entry.id !== null)?.id ?? 0;
}

function rowsOf(list: HTMLElement): HTMLElement[] {
  return Array.from(list.querySelectorAll<HTMLElement>("li[data-key]"));
}

/** The first row whose bottom is below the top of the viewport, and how far below the top it starts. */
function anchorOf(list: HTMLElement): Anchor | null {
  const rows = rowsOf(list);
  let low = 0;
  let high = rows.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (rows[middle].offsetTop + rows[middle].offsetHeight <= list.scrollTop) low = middle + 1;
    else high = middle;
  }
  const row = rows[low];
  return row ? { key: row.dataset.key!, offset: row.offsetTop - list.scrollTop } : null;
}

function restore(list: HTMLElement, anchor: Anchor): void {
  const row = rowsOf(list).find((element) => element.dataset.key === anchor.key);
  if (row) list.scrollTop = row.offsetTop - anchor.offset;
}

function initialPlace(entries: Entry[], saved: ScrollPlace | null, marker: number | null): Place {
  if (saved) return saved.follow ? following : { follow: false, startKey: saved.startKey, endKey: saved.endKey };
  const first = marker === null ? undefined : entries.find((entry) => entry.id === marker);
  return first ? around(entries, entryKey(first)) : following;
}

/** The conversation's messages, windowed (window.ts): held in place while the reader reads back,
 *  following the newest while they are at the bottom, with day separators and "New messages". */
export const MessageList = memo(function MessageList(props: MessageListProps) {
  const { peer, me, thread, marker, listRef: list, onLoadOlder } = props;
  const entries = thread.entries;
  const [place, setPlace] = useState<Place | null>(null);  // null until the history is here
  const anchor = useRef<Anchor | null>(null);
  const grown = useRef(0);  // windows grown since the reader last scrolled or a message came: a bound
  const counted = useRef(entries.length);
  if (counted.current !== entries.length) {
    counted.current = entries.length;
    grown.current = 0;
  }
  const setTop = useRef(-1);  // where this component last put the scroll: that scroll event is not the reader's
  const pinned = useRef<{ anchor: Anchor | null; place: Place | null }>({ anchor: null, place: null });
  const span: Span = place ? spanOf(entries, place) : { start: 0, end: 0 };
  const shown = entries.slice(span.start, span.end);

  const seenUpTo = useRef<number | null>(null);  // the newest message the reader was shown at the bottom
  // Placed once the history is here (where the first unread is, is known then), or once it failed.
  if (place === null && (thread.loaded || (!thread.loading && entries.length > 0))) {
    const initial = initialPlace(entries, props.saved, marker);
    seenUpTo.current = initial.follow || marker === null ? newestId(entries) : marker - 1;
    setPlace(initial);
    anchor.current = props.saved && !props.saved.follow && props.saved.anchorKey
      ? { key: props.saved.anchorKey, offset: props.saved.offset } : null;
    pinned.current.place = initial;
  }

  /** Grow the window toward an edge the reader is near; fetch older history at the very top. */
  const reachEdges = useCallback((element: HTMLElement, current: Place, currentSpan: Span) => {
    const fromBottom = element.scrollHeight - element.scrollTop - element.clientHeight;
    if (fromBottom < BOTTOM_PX && currentSpan.end >= entries.length && !current.follow) return setPlace(following);
    if (fromBottom >= BOTTOM_PX && current.follow) return setPlace(hold(entries, currentSpan));
    if (grown.current > 8) return;  // growing both ways in turn, rows too small for the viewport: stop
    const grow = (next: Place) => { grown.current += 1; setPlace(next); };
    if (element.scrollTop < EDGE_PX) {
      if (currentSpan.start > 0) return grow(growUp(entries, currentSpan, current));
      if (thread.hasMore && !thread.loading && !thread.error) onLoadOlder();
    }
    if (fromBottom < EDGE_PX && currentSpan.end < entries.length) grow(growDown(entries, currentSpan, current));
  }, [entries, thread.hasMore, thread.loading, thread.error, onLoadOlder]);

  // After each change: keep the row the reader looks at where it was, or stay at the newest.
  useLayoutEffect(() => {
    const element = list.current;
    if (!element || !place) return;
    const first = !anchor.current && marker !== null && !place.follow
      ? rowsOf(element).find((row) => row.dataset.id === String(marker)) : undefined;
    if (first) anchor.current = { key: first.dataset.key!, offset: MARKER_ROOM_PX };  // "New messages" shows above it
    if (place.follow) element.scrollTop = element.scrollHeight;
    else if (anchor.current) restore(element, anchor.current);
    anchor.current = place.follow ? null : first ? anchor.current : anchorOf(element);
    pinned.current = { anchor: anchor.current, place };
    setTop.current = element.scrollTop;
    reachEdges(element, place, span);
  });

  // Late changes of size (an image decoded, a font loaded) keep the newest in view while following.
  const isFollowing = place?.follow ?? false;
  useEffect(() => {
    const element = list.current;
    const content = element?.querySelector("ol");
    if (!element || !content || !isFollowing || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => { element.scrollTop = element.scrollHeight; });
    observer.observe(content);
    return () => observer.disconnect();
  }, [list, isFollowing]);

  // One's own new message: back to the newest, to see it go.
  const last = entries[entries.length - 1];
  const lastKey = last ? entryKey(last) : null;
  const seenLast = useRef(lastKey);
  if (lastKey !== seenLast.current) {
    seenLast.current = lastKey;
    if (place && !place.follow && last?.id === null && last.from === me) {
      anchor.current = null;
      setPlace(following);
    }
  }

  function scrolled() {
    const element = list.current;
    if (!element || !place) return;
    if (element.scrollTop !== setTop.current) grown.current = 0;
    anchor.current = anchorOf(element);
    pinned.current = { anchor: anchor.current, place };
    reachEdges(element, place, span);
  }

  // Leaving the conversation: remember where the reader was, to come back to it.
  const save = props.onSavePlace;
  useEffect(() => () => {
    const { anchor: last, place: where } = pinned.current;
    if (!where) return;
    save({ follow: where.follow, startKey: where.startKey, endKey: where.endKey, anchorKey: last?.key ?? null,
           offset: last?.offset ?? 0 });
  }, [save]);

  const lastMine = lastOf(entries, (entry) => entry.from === me);
  const below = entries.length - span.end;
  const atNewest = place?.follow ?? true;
  if (atNewest) seenUpTo.current = newestId(entries);
  const newBelow = entries.filter((entry) => entry.from === peer && entry.id !== null && entry.id > (seenUpTo.current ?? Infinity)).length;

  function toNewest() {
    anchor.current = null;
    setPlace(following);
  }

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
            <li className="more"><button type="button" className="link"
                    onClick={() => place && setPlace(growUp(entries, span, place))}>Show older messages</button></li>
          )}
          {thread.clearedBy && <li className="notice">This conversation was erased by a logout.</li>}
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
      {(!atNewest || below > 0) && entries.length > 0 && (
        <button type="button" className="to-newest" onClick={toNewest}
                aria-label={newBelow > 0 ? `Jump to the newest message, ${newBelow} new` : "Jump to the newest message"}>
          <span aria-hidden="true">↓</span>{newBelow > 0 && <span className="count" aria-hidden="true">{newBelow}</span>}
        </button>
      )}
    </div>
  );
});

// The message list's window (window.ts) kept against the page: where it starts, held in place as
// rows come and go, grown as the reader nears an edge, following the newest at the bottom, and
// remembered when the conversation is left.
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type RefObject } from "react";
import { entryKey, type Entry } from "../../lib/entries";
import type { Thread } from "../../lib/store";
import type { ScrollPlace } from "../../lib/views";
import { anchorOf, restore, rowsOf, type Anchor } from "./scrollAnchor";
import { around, following, growDown, growUp, hold, spanOf, type Place, type Span } from "./window";

const EDGE_PX = 240;        // this close to an edge, more rows come in
const BOTTOM_PX = 48;       // this close to the bottom counts as reading the newest
const MARKER_ROOM_PX = 44;  // the first unread message opens this far down, below "New messages"
const MAX_GROWS = 8;        // grown without the reader scrolling nor a message coming: rows too small, stop

interface WindowInput {
  list: RefObject<HTMLDivElement | null>;
  thread: Thread;
  me: string;
  marker: number | null;
  saved: ScrollPlace | null;
  onLoadOlder: () => void;
  onSavePlace: (place: ScrollPlace) => void;
}

export interface Window {
  span: Span;
  following: boolean;
  newSince: number | null;  // messages after this id arrived while the reader was away from the newest
  scrolled: () => void;
  older: () => void;
  toNewest: () => void;
}

function initialPlace(entries: Entry[], saved: ScrollPlace | null, marker: number | null): Place {
  if (saved) return saved.follow ? following : { follow: false, startKey: saved.startKey, endKey: saved.endKey };
  const first = marker === null ? undefined : entries.find((entry) => entry.id === marker);
  return first ? around(entries, entryKey(first)) : following;
}

export function newestId(entries: Entry[]): number {
  for (let index = entries.length - 1; index >= 0; index -= 1) {
    const id = entries[index].id;
    if (id !== null) return id;
  }
  return 0;
}

/** Late changes of size (an image decoded, a font loaded) keep the newest in view while following. */
function useStayAtNewest(list: RefObject<HTMLDivElement | null>, active: boolean) {
  useEffect(() => {
    const element = list.current;
    const content = element?.querySelector("ol");
    if (!element || !content || !active || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => { element.scrollTop = element.scrollHeight; });
    observer.observe(content);
    return () => observer.disconnect();
  }, [list, active]);
}

/** Leaving the conversation: remember where the reader was, to come back to it. */
function useRemember(pinned: RefObject<{ anchor: Anchor | null; place: Place | null }>, save: (place: ScrollPlace) => void) {
  useEffect(() => () => {
    const { anchor, place } = pinned.current;
    if (place) save({ ...place, anchorKey: anchor?.key ?? null, offset: anchor?.offset ?? 0 });
  }, [pinned, save]);
}

export function useWindow({ list, thread, me, marker, saved, onLoadOlder, onSavePlace }: WindowInput): Window {
  const entries = thread.entries;
  const [place, setPlace] = useState<Place | null>(null);  // null until the history is here
  const anchor = useRef<Anchor | null>(null);
  const pinned = useRef<{ anchor: Anchor | null; place: Place | null }>({ anchor: null, place: null });
  const grown = useRef(0);
  const setTop = useRef(-1);  // where the scroll was last put by this hook: that scroll event is not the reader's
  const seenUpTo = useRef<number | null>(null);
  const counted = useRef(entries.length);
  const lastKey = useRef<string | null>(null);
  const span: Span = place ? spanOf(entries, place) : { start: 0, end: 0 };

  if (counted.current !== entries.length) {  // a message came: growing may be due again
    counted.current = entries.length;
    grown.current = 0;
  }
  // Placed once the history is here (where the first unread is, is known then), or once it failed.
  if (place === null && (thread.loaded || (!thread.loading && entries.length > 0))) {
    const initial = initialPlace(entries, saved, marker);
    seenUpTo.current = initial.follow || marker === null ? newestId(entries) : marker - 1;
    anchor.current = saved && !saved.follow && saved.anchorKey ? { key: saved.anchorKey, offset: saved.offset } : null;
    pinned.current.place = initial;
    setPlace(initial);
  }
  // One's own new message: back to the newest, to see it go.
  const last = entries[entries.length - 1];
  const key = last ? entryKey(last) : null;
  if (key !== lastKey.current) {
    lastKey.current = key;
    if (place && !place.follow && last?.id === null && last.from === me) {
      anchor.current = null;
      setPlace(following);
    }
  }
  if (place?.follow ?? true) seenUpTo.current = newestId(entries);

  /** Follow or hold by where the reader is; grow toward an edge they near; fetch older history at the top. */
  const reachEdges = useCallback((element: HTMLElement, current: Place, currentSpan: Span) => {
    const fromBottom = element.scrollHeight - element.scrollTop - element.clientHeight;
    if (fromBottom < BOTTOM_PX && currentSpan.end >= entries.length && !current.follow) return setPlace(following);
    if (fromBottom >= BOTTOM_PX && current.follow) return setPlace(hold(entries, currentSpan));
    if (grown.current > MAX_GROWS) return;
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
    if (first) anchor.current = { key: first.dataset.key!, offset: MARKER_ROOM_PX };
    if (place.follow) element.scrollTop = element.scrollHeight;
    else if (anchor.current) restore(element, anchor.current);
    anchor.current = place.follow ? null : first ? anchor.current : anchorOf(element);
    pinned.current = { anchor: anchor.current, place };
    setTop.current = element.scrollTop;
    reachEdges(element, place, span);
  });

  useStayAtNewest(list, place?.follow ?? false);
  useRemember(pinned, onSavePlace);

  const scrolled = () => {
    const element = list.current;
    if (!element || !place) return;
    if (element.scrollTop !== setTop.current) grown.current = 0;
    anchor.current = anchorOf(element);
    pinned.current = { anchor: anchor.current, place };
    reachEdges(element, place, span);
  };
  const older = () => place && setPlace(growUp(entries, span, place));
  const toNewest = () => {
    anchor.current = null;
    setPlace(following);
  };
  return { span, following: place?.follow ?? true, newSince: seenUpTo.current, scrolled, older, toNewest };
}

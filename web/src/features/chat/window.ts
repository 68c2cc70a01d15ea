// Which messages of a long conversation are in the page: a window of rows around where the
// reader is, grown a step as they scroll toward either edge and trimmed on the far side, so the
// page holds at most MAX rows however long the conversation (a 2,000-row page cost 128–298 ms
// per new message). Bounds are keys, not indices: history paged in above, or a message deleted,
// moves indices but not the rows the reader looks at. Plain functions, tested without a DOM.
import { entryKey, type Entry } from "../../lib/entries";

export const WINDOW = 60;  // rows kept while following the newest message
export const STEP = 30;    // rows added when the reader nears an edge
export const MAX = 150;    // rows the page holds at most

/** Following the newest message, or holding the rows from startKey to endKey. */
export interface Place {
  follow: boolean;
  startKey: string | null;
  endKey: string | null;
}

export interface Span {
  start: number;
  end: number;  // exclusive
}

export const following: Place = { follow: true, startKey: null, endKey: null };

function indexOf(entries: Entry[], key: string | null, fallback: number): number {
  if (key === null) return fallback;
  const index = entries.findIndex((entry) => entryKey(entry) === key);
  return index < 0 ? fallback : index;
}

/** The rows to render for a place. */
export function spanOf(entries: Entry[], place: Place): Span {
  const count = entries.length;
  if (place.follow) return { start: Math.max(0, count - WINDOW), end: count };
  const start = Math.min(indexOf(entries, place.startKey, 0), count);
  const end = Math.max(start, Math.min(count, indexOf(entries, place.endKey, count - 1) + 1));
  return { start, end: Math.min(end, start + MAX) };
}

/** Hold the rows shown now: the reader has scrolled away from the newest message. */
export function hold(entries: Entry[], span: Span): Place {
  return { follow: false, startKey: entries[span.start] ? entryKey(entries[span.start]) : null,
           endKey: entries[span.end - 1] ? entryKey(entries[span.end - 1]) : null };
}

/** Rows further up come in; the bottom is trimmed to MAX. The same place when at the top already. */
export function growUp(entries: Entry[], span: Span, place: Place): Place {
  if (span.start === 0) return place;
  const start = Math.max(0, span.start - STEP);
  return hold(entries, { start, end: Math.min(span.end, start + MAX) });
}

/** Rows further down come in; the top is trimmed to MAX; at the newest, the window follows it again. */
export function growDown(entries: Entry[], span: Span, place: Place): Place {
  if (span.end >= entries.length) return place;
  const end = Math.min(entries.length, span.end + STEP);
  return hold(entries, { start: Math.max(span.start, end - MAX), end });
}

/** A window from a few rows before one message (the first unread), held there to read from it. */
export function around(entries: Entry[], key: string): Place {
  const index = entries.findIndex((entry) => entryKey(entry) === key);
  if (index < 0) return following;
  const start = Math.max(0, index - 10);
  return hold(entries, { start, end: Math.min(entries.length, start + WINDOW) });
}

// Messages as a conversation shows them: acked ones in id order, pending sends after them.
import type { FileInfo, Message } from "./api";

/** A message as shown: acked (has an id) or pending (only a client_id so far). */
export interface Entry {
  id: number | null;
  client_id: string | null;
  from: string;
  to: string;
  message: string;
  attachment: FileInfo | null;
  sent_at: string;
  expires_at: string | null;
  failed?: string;
}

export function toEntry(message: Message): Entry {
  const { id, client_id, from, to, message: text, attachment, sent_at, expires_at } = message;
  return { id, client_id, from, to, message: text, attachment: attachment ?? null, sent_at, expires_at: expires_at ?? null };
}

/** A key that stays the same when a pending send is acked, so its row is not rebuilt. */
export function entryKey(entry: Entry): string {
  return entry.client_id !== null ? `c${entry.from}\n${entry.client_id}` : `m${entry.id}`;
}

function byId(a: Entry, b: Entry): number {
  if (a.id === null || b.id === null) return (a.id === null ? 1 : 0) - (b.id === null ? 1 : 0);
  return a.id - b.id;
}

function lastAckedId(entries: Entry[]): number {
  for (let index = entries.length - 1; index >= 0; index -= 1) {
    const id = entries[index].id;
    if (id !== null) return id;
  }
  return 0;
}

/** Merge acked messages into entries: one per id, a pending entry replaced by its ack.
 *  A single message newer than every acked one (a live message, the common case) is placed
 *  without sorting the conversation again: a long conversation stays cheap to add to. */
export function mergeEntries(entries: Entry[], messages: Message[]): Entry[] {
  if (messages.length === 1 && messages[0].id > lastAckedId(entries)) {
    const entry = toEntry(messages[0]);
    const key = entry.client_id !== null ? entryKey(entry) : null;
    const kept = key === null ? entries : entries.filter((e) => e.id !== null || entryKey(e) !== key);
    const at = kept.findIndex((e) => e.id === null);
    return at < 0 ? [...kept, entry] : [...kept.slice(0, at), entry, ...kept.slice(at)];
  }
  const incoming = messages.map(toEntry);
  const ids = new Set(incoming.map((entry) => entry.id));
  const acked = new Set(incoming.filter((e) => e.client_id !== null).map(entryKey));
  const kept = entries.filter((entry) => entry.id === null ? !acked.has(entryKey(entry)) : !ids.has(entry.id));
  return [...kept, ...incoming].sort(byId);
}

/** Whether this message is one not yet shown in these entries. */
export function isNew(entries: Entry[], message: Message): boolean {
  return message.id > lastAckedId(entries) || !entries.some((entry) => entry.id === message.id);
}

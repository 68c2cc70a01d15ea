// Who cannot reach whom (contract v1.2): the people this user blocks, as `GET /api/blocks/` lists
// them, and the people whose refusal showed that they block this user. The server never lists
// the second kind (nobody is told who blocks them), so the client learns it only from a `blocked`
// refusal of its own send, and forgets it as soon as anything comes from that person: nothing
// passes between two people while either blocks the other, and the lift sends each the other's
// presence.
import type { Block } from "./api";

export type BlocksLoad = "loading" | "ready" | { error: string };

export interface Blocks {
  mine: Record<string, string>;    // username → since
  theirs: Record<string, true>;    // refused us, and not blocked by us
  load: BlocksLoad;
}

/** How a conversation stands: blocked by this user, by the peer, or open. */
export type BlockState = "mine" | "theirs" | null;

export const noBlocks: Blocks = { mine: {}, theirs: {}, load: "loading" };

export type BlockChange =
  | { type: "blocks"; list: Block[] }
  | { type: "blocksFailed"; error: string }
  | { type: "block"; with: string; since: string }
  | { type: "unblock"; with: string }
  | { type: "refusedBlocked"; with: string };

function without<T>(record: Record<string, T>, key: string): Record<string, T> {
  if (!(key in record)) return record;
  const rest = { ...record };
  delete rest[key];
  return rest;
}

export function blockOf(blocks: Blocks, peer: string): BlockState {
  if (peer in blocks.mine) return "mine";
  return blocks.theirs[peer] ? "theirs" : null;
}

/** Something came from `peer` (a message, typing, a receipt, presence): no block stands. */
export function heardFrom(blocks: Blocks, peer: string): Blocks {
  return peer in blocks.theirs ? { ...blocks, theirs: without(blocks.theirs, peer) } : blocks;
}

/** Apply one change; the same object when nothing changed. */
export function changeBlocks(blocks: Blocks, change: BlockChange): Blocks {
  switch (change.type) {
    case "blocks":
      return { ...blocks, mine: Object.fromEntries(change.list.map((b) => [b.username, b.since])), load: "ready" };
    case "blocksFailed":
      return { ...blocks, load: { error: change.error } };
    case "block":
      return blocks.mine[change.with] === change.since ? blocks
        : { ...blocks, mine: { ...blocks.mine, [change.with]: change.since } };
    case "unblock":
      return change.with in blocks.mine ? { ...blocks, mine: without(blocks.mine, change.with) } : blocks;
    case "refusedBlocked":  // the block list, loaded again just before, says whether it is ours
      return change.with in blocks.mine || blocks.theirs[change.with] ? blocks
        : { ...blocks, theirs: { ...blocks.theirs, [change.with]: true } };
  }
}

/** The people this user blocks, most recent first, as the account lists them. */
export function blockedPeople(blocks: Blocks): Block[] {
  return Object.entries(blocks.mine).map(([username, since]) => ({ username, since }))
    .sort((a, b) => b.since.localeCompare(a.since));
}

/** Why nothing can be sent in a conversation, said where the message box is; null when it can. */
export function refusalFor(block: BlockState, peer: string): string | null {
  if (block === "mine") return `You blocked ${peer}, so neither of you can send messages. Unblock ${peer} to write again.`;
  if (block === "theirs") return `${peer} has blocked you, so you cannot send them messages.`;
  return null;
}

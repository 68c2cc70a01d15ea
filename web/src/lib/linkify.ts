// Links in message text, made safe: only http(s) addresses become links (never `javascript:`,
// `data:` or any other scheme), a bare `www.` address gets https, and the punctuation that
// usually ends a sentence stays out of the link. The text itself is never parsed as HTML.

export type Piece = { text: string } | { text: string; href: string };

const CANDIDATE = /\b(?:https?:\/\/|www\.)[^\s<>"]+/gi;
const TRAILING = /[.,:;!?'")\]}]+$/;

function trimmed(candidate: string): string {
  let link = candidate.replace(TRAILING, "");
  // keep a closing parenthesis that closes one opened inside the link (Wikipedia's addresses)
  const rest = candidate.slice(link.length);
  if (rest.startsWith(")") && (link.match(/\(/g)?.length ?? 0) > (link.match(/\)/g)?.length ?? 0)) link += ")";
  return link;
}

function safeHref(link: string): string | null {
  try {
    const url = new URL(/^www\./i.test(link) ? `https://${link}` : link);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Split text into plain pieces and links. */
export function linkify(text: string): Piece[] {
  const pieces: Piece[] = [];
  let last = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    const link = trimmed(match[0]);
    const href = safeHref(link);
    const start = match.index ?? 0;
    if (!href || link.length <= 4) continue;
    if (start > last) pieces.push({ text: text.slice(last, start) });
    pieces.push({ text: link, href });
    last = start + link.length;
  }
  if (last < text.length) pieces.push({ text: text.slice(last) });
  return pieces;
}

import { linkify } from "../../../lib/linkify";

/** A message's text with its web addresses as links (http and https only; lib/linkify.ts). They open
 *  in a new tab that cannot reach back to this one, and tell the site nothing of where they came from. */
export function MessageText({ text }: { text: string }) {
  return (
    <p>
      {linkify(text).map((piece, index) => "href" in piece
        ? <a key={index} href={piece.href} target="_blank" rel="noopener noreferrer nofollow">{piece.text}</a>
        : piece.text)}
    </p>
  );
}

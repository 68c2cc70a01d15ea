import { useLayoutEffect, useRef, type ClipboardEvent, type FormEvent, type KeyboardEvent, type ReactNode } from "react";
import { useSelector } from "../../../lib/useStore";

interface ComposerProps {
  peer: string;
  onDraft: (peer: string, text: string) => void;
  onSend: (peer: string) => void;
  onFiles: (peer: string, files: File[]) => void;
  attachControl: ReactNode;  // the Attach button
  staged: ReactNode;         // the file about to go, with its preview
  progress: ReactNode;       // an upload under way
  refusal: string | null;    // why nothing can be sent in this conversation (a block), or null
}

const MAX_HEIGHT_PX = 192;  // about eight lines; longer drafts scroll inside the box
const SIZES_ITSELF = typeof CSS !== "undefined" && CSS.supports("field-sizing", "content");

/** The message box of one conversation, its draft kept per conversation (views.ts): Enter sends,
 *  Shift+Enter starts a new line, it grows with its text, and a pasted file is staged to send. */
export function Composer({ peer, onDraft, onSend, onFiles, attachControl, staged, progress, refusal }: ComposerProps) {
  const draft = useSelector((state) => state.views[peer]?.draft ?? "");
  const hasFile = useSelector((state) => Boolean(state.views[peer]?.staged));
  const box = useRef<HTMLTextAreaElement>(null);

  // Browsers with `field-sizing: content` (styles.css) grow the box themselves, without the forced
  // layout of measuring it on every key; the others measure.
  useLayoutEffect(() => {
    const element = box.current;
    if (!element || SIZES_ITSELF) return;
    element.style.height = "auto";
    element.style.height = `${Math.min(element.scrollHeight + 2, MAX_HEIGHT_PX)}px`;
  }, [draft]);

  function submit(event?: FormEvent) {
    event?.preventDefault();
    if (refusal) return;
    onSend(peer);
    box.current?.focus();
  }

  function keyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) submit(event);
  }

  function pasted(event: ClipboardEvent<HTMLTextAreaElement>) {
    const files = Array.from(event.clipboardData.files);
    if (files.length === 0) return;
    event.preventDefault();
    onFiles(peer, files);
  }

  return (
    <form className="composer" onSubmit={submit}>
      {progress}
      {staged}
      {refusal && <p id="composer-refusal" className="refusal">{refusal}</p>}
      <div className="composer-row">
        {attachControl}
        <label htmlFor="message-box" className="visually-hidden">Message</label>
        <textarea id="message-box" ref={box} rows={1} value={draft} maxLength={4000} disabled={refusal !== null}
                  placeholder={hasFile ? "Add a caption" : "Message"} aria-describedby={refusal ? "composer-refusal" : undefined}
                  onChange={(e) => onDraft(peer, e.target.value)} onKeyDown={keyDown} onPaste={pasted} />
        <button type="submit" disabled={refusal !== null}>Send</button>
      </div>
    </form>
  );
}

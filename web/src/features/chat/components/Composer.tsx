import { useState, type FormEvent, type KeyboardEvent, type ReactNode } from "react";

interface ComposerProps {
  onSend: (text: string) => void;
  onTyping: () => void;
  attachControl: ReactNode;
}

/** The message box: Enter sends, Shift+Enter starts a new line. */
export function Composer({ onSend, onTyping, attachControl }: ComposerProps) {
  const [text, setText] = useState("");

  function submit(event?: FormEvent) {
    event?.preventDefault();
    if (!text.trim()) return;
    onSend(text);
    setText("");
  }

  function keyDown(event: KeyboardEvent<HTMLTextAreaElement>) {
    if (event.key === "Enter" && !event.shiftKey) submit(event);
  }

  return (
    <form className="composer" onSubmit={submit}>
      {attachControl}
      <label htmlFor="message-box" className="visually-hidden">Message</label>
      <textarea id="message-box" rows={1} value={text} maxLength={4000} placeholder="Message"
                onChange={(e) => { setText(e.target.value); onTyping(); }} onKeyDown={keyDown} />
      <button type="submit">Send</button>
    </form>
  );
}

import { useState } from "react";

/** Before any conversation: the one thing to do is share one's username, so say it and offer to copy it. */
export function FirstRun({ me }: { me: string }) {
  const [copied, setCopied] = useState<"yes" | "no" | null>(null);

  async function copy() {
    try {
      await navigator.clipboard.writeText(me);
      setCopied("yes");
    } catch {
      setCopied("no");
    }
  }

  return (
    <section className="first-run" aria-labelledby="first-run-title">
      <h2 id="first-run-title">No conversations yet</h2>
      <p>Your username is <strong className="own-name">{me}</strong>. Give it to the people you want to talk to;
        with theirs, start a conversation above.</p>
      <div className="actions">
        <button type="button" className="secondary" onClick={copy}>Copy your username</button>
      </div>
      <p className="hint" aria-live="polite">
        {copied === "yes" ? "Copied." : copied === "no" ? "The browser did not allow copying: select the name instead." : ""}
      </p>
    </section>
  );
}

import { useId, useRef, useState } from "react";
import { explain } from "../../../lib/api";
import type { BlockState } from "../../../lib/blocks";

interface BlockControlProps {
  peer: string;
  state: BlockState;
  onBlock: (peer: string) => Promise<void>;
  onUnblock: (peer: string) => Promise<void>;
  label?: string;  // the button's accessible name where "Block" alone would not say whom (a list)
}

/** *Block* or *Unblock*, each asking first and saying plainly what it does. A block by the peer
 *  does not stop this user blocking them too. */
export function BlockControl({ peer, state, onBlock, onUnblock, label }: BlockControlProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const blocking = state !== "mine";
  const verb = blocking ? "Block" : "Unblock";
  const id = useId();

  function open() {
    setError(null);
    dialog.current?.showModal();
  }

  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await (blocking ? onBlock(peer) : onUnblock(peer));
      dialog.current?.close();
    } catch (failure) {
      setError(explain(failure, blocking ? `${peer} was not blocked` : `${peer} is still blocked`));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <button type="button" className="secondary block" aria-haspopup="dialog" aria-label={label} onClick={open}>{verb}</button>
      <dialog ref={dialog} aria-labelledby={`${id}-title`} aria-describedby={`${id}-text`}>
        <h2 id={`${id}-title`}>{verb} {peer}?</h2>
        {blocking ? (
          <div id={`${id}-text`}>
            <p>Neither of you will be able to send the other messages, set the timer or delete messages, and neither
              will see the other online or typing. {peer} is not notified, but their messages to you are refused.</p>
            <p>Your conversation stays as it is: both of you still read what was sent, and a logout still erases it.
              You can unblock {peer} at any time.</p>
          </div>
        ) : (
          <p id={`${id}-text`}>You and {peer} can send each other messages again and see each other online, unless {peer} has
            blocked you too.</p>
        )}
        {error && <p role="alert" className="error">{error}</p>}
        <div className="actions">
          <button type="button" className={blocking ? "danger" : undefined} onClick={confirm} disabled={busy}>{verb} {peer}</button>
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>Cancel</button>
        </div>
      </dialog>
    </>
  );
}

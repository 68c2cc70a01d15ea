import { useRef, useState } from "react";

interface LogoutButtonProps {
  onConfirm: () => Promise<void>;
}

/** Logging out erases both sides of every conversation: say so plainly, and ask first. */
export function LogoutButton({ onConfirm }: LogoutButtonProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);

  async function confirm() {
    setBusy(true);
    try {
      await onConfirm();
    } finally {
      setBusy(false);
      dialog.current?.close();
    }
  }

  return (
    <>
      <button type="button" className="danger" onClick={() => dialog.current?.showModal()}>Log out</button>
      <dialog ref={dialog} aria-labelledby="logout-title" aria-describedby="logout-text">
        <h2 id="logout-title">Log out and erase everything?</h2>
        <p id="logout-text">
          Logging out deletes every message and file of all your conversations, for you
          and for the people you talk to. Nobody can get them back.
        </p>
        <div className="actions">
          <button type="button" className="danger" onClick={confirm} disabled={busy}>Erase and log out</button>
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>Cancel</button>
        </div>
      </dialog>
    </>
  );
}

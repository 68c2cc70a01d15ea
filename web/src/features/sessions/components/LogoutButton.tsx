import { useRef, useState } from "react";

interface LogoutButtonProps {
  onConfirm: () => Promise<void>;  // rejects with what to tell the person; they then stay logged in
}

/** Logging out erases both sides of every conversation: say so plainly, and ask first. If it cannot
 *  be done (offline), the dialog stays and says that nothing was erased. */
export function LogoutButton({ onConfirm }: LogoutButtonProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      dialog.current?.close();
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  }

  function open() {
    setError(null);
    dialog.current?.showModal();
  }

  return (
    <>
      <button type="button" className="danger" onClick={open}>Log out</button>
      <dialog ref={dialog} aria-labelledby="logout-title" aria-describedby="logout-text">
        <h2 id="logout-title">Log out and erase everything?</h2>
        <p id="logout-text">
          Logging out deletes every message and file of all your conversations, for you
          and for the people you talk to. Nobody can get them back.
        </p>
        {error && <p role="alert" className="error">{error}</p>}
        <div className="actions">
          <button type="button" className="danger" onClick={confirm} disabled={busy}>
            {busy ? "Erasing…" : "Erase and log out"}
          </button>
          <button type="button" className="secondary" onClick={() => dialog.current?.close()} autoFocus>Cancel</button>
        </div>
      </dialog>
    </>
  );
}

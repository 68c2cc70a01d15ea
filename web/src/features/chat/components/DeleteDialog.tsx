import { useEffect, useRef, useState } from "react";
import type { Entry } from "../../../lib/store";

interface DeleteDialogProps {
  peer: string;
  entry: Entry | null;  // the message to delete; the dialog is open while there is one
  onConfirm: (id: number) => Promise<void>;
  onClose: () => void;
  onDeleted: () => void;  // after the dialog has closed: its opener is gone, so focus goes somewhere useful
}

function describe(entry: Entry): string {
  return entry.message || (entry.attachment ? `Attachment: ${entry.attachment.name}` : "");
}

/** Delete for everyone cannot be undone: ask first, and say who loses the message. */
export function DeleteDialog({ peer, entry, onConfirm, onClose, onDeleted }: DeleteDialogProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    const element = dialog.current;
    if (entry && !element?.open) {
      setError("");
      element?.showModal();
      cancel.current?.focus();  // the safe choice first
    } else if (!entry && element?.open) {
      element.close();
    }
  }, [entry]);

  async function confirm() {
    if (entry?.id == null) return;
    setBusy(true);
    try {
      await onConfirm(entry.id);
      dialog.current?.close();
      onClose();
      onDeleted();
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : "The message could not be deleted.");
    } finally {
      setBusy(false);
    }
  }

  return (
    <dialog ref={dialog} aria-labelledby="delete-title" aria-describedby="delete-text" onClose={onClose}>
      <h2 id="delete-title">Delete this message for everyone?</h2>
      {entry && <blockquote className="quote">{describe(entry)}</blockquote>}
      <p id="delete-text">
        It disappears for you and for {peer}{entry?.attachment ? ", with its attachment" : ""}. Nobody can get it back.
      </p>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="actions">
        <button type="button" className="danger" onClick={confirm} disabled={busy}>Delete for everyone</button>
        <button type="button" className="secondary" ref={cancel} onClick={onClose}>Cancel</button>
      </div>
    </dialog>
  );
}

import { useRef, useState, type FormEvent } from "react";
import { Field } from "../../../components/Field";
import { deleteErrors, type DeleteErrors } from "../refusals";

interface DeleteAccountSectionProps {
  username: string;
  onDelete: (phrase: string) => Promise<void>;  // on success the login screen replaces the account
}

/** *Delete account*: a plain warning of everything it erases, for whom, and that the username is
 *  gone for good; the phrase asked again; nothing done until then. */
export function DeleteAccountSection({ username, onDelete }: DeleteAccountSectionProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [phrase, setPhrase] = useState("");
  const [errors, setErrors] = useState<DeleteErrors>({});
  const [busy, setBusy] = useState(false);

  function open() {
    setPhrase("");
    setErrors({});
    dialog.current?.showModal();
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setErrors({});
    try {
      await onDelete(phrase);
    } catch (failure) {
      setErrors(deleteErrors(failure));
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="delete-account-title" className="account-section">
      <h3 id="delete-account-title">Delete account</h3>
      <p className="hint">Erases your account and everything of it, for you and for the people you talk to.</p>
      <div className="actions">
        <button type="button" className="danger" aria-haspopup="dialog" onClick={open}>Delete account…</button>
      </div>
      <dialog ref={dialog} aria-labelledby="delete-account-dialog-title" aria-describedby="delete-account-text">
        <form onSubmit={submit} noValidate>
          <h2 id="delete-account-dialog-title">Delete your account?</h2>
          <div id="delete-account-text">
            <p>This erases, for good:</p>
            <ul>
              <li>every message and file of all your conversations, for you <strong>and for the people you talk
                to</strong>;</li>
              <li>your profile and avatar, your sessions on every device, your invites, and your list of blocked
                people.</li>
            </ul>
            <p>Your username <strong>{username}</strong> can never be registered again, by you or anyone else.
              Nobody can undo this.</p>
          </div>
          <input type="text" name="username" autoComplete="username" value={username} readOnly hidden />
          <Field label="Your phrase" name="phrase" type="password" autoComplete="current-password" required autoFocus
                 value={phrase} onChange={(e) => setPhrase(e.target.value)} error={errors.phrase}
                 hint="Type your phrase again to confirm that it is you, and that you mean it." />
          {errors.form && <p role="alert" className="error">{errors.form}</p>}
          <div className="actions">
            <button type="submit" className="danger" disabled={busy || !phrase}>
              {busy ? "Deleting…" : "Delete my account"}
            </button>
            <button type="button" className="secondary" onClick={() => dialog.current?.close()}>Cancel</button>
          </div>
        </form>
      </dialog>
    </section>
  );
}

import { useState, type FormEvent, type ReactNode } from "react";
import { Avatar } from "../../../components/Avatar";
import { Field } from "../../../components/Field";
import { ApiError, explain, type User } from "../../../lib/api";

interface ProfileSectionProps {
  me: User;
  onDisplayName: (name: string) => Promise<void>;
  avatarControl: ReactNode;
}

/** What others see of the person: their avatar and display name, both changed here and seen by
 *  their conversation partners at once (the server's `profile` frame). */
export function ProfileSection({ me, onDisplayName, avatarControl }: ProfileSectionProps) {
  const [name, setName] = useState(me.display_name || me.username);
  const [error, setError] = useState<string | undefined>();
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  async function save(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    setSaved(false);
    try {
      await onDisplayName(name);
      setSaved(true);
    } catch (failure) {
      setError(failure instanceof ApiError && failure.fields.display_name
        ? failure.fields.display_name : explain(failure, "Your name was not changed"));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="profile-title" className="account-section">
      <h3 id="profile-title">Profile</h3>
      <div className="me">
        <Avatar name={me.display_name || me.username} url={me.avatar_url} />
        <span>Your username is <strong>{me.username}</strong>: people reach you with it.</span>
        {avatarControl}
      </div>
      <form onSubmit={save} className="display-name" noValidate>
        <Field label="Display name" name="display_name" value={name} maxLength={64} required
               onChange={(e) => { setName(e.target.value); setSaved(false); }} error={error}
               hint="What the people you talk to see beside your messages: 1 to 64 characters." />
        <div className="actions">
          <button type="submit" disabled={busy}>Save name</button>
          <span className="hint" aria-live="polite">{saved ? "Saved." : ""}</span>
        </div>
      </form>
    </section>
  );
}

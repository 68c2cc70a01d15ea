import { useState, type FormEvent } from "react";
import { Field } from "../../../components/Field";
import { api, ApiError, type User } from "../../../lib/api";

const PHRASE_RULES = "12 to 256 characters, at least 3 words, and not containing your username.";
const USERNAME_RULES = "3 to 32 of a–z, 0–9, _ . -";

interface AuthFormProps {
  onAuthenticated: (user: User) => void;
}

/** Register or log in with one form: the button pressed decides which. */
export function AuthForm({ onAuthenticated }: AuthFormProps) {
  const [username, setUsername] = useState("");
  const [phrase, setPhrase] = useState("");
  const [failure, setFailure] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const submitter = (event.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
    const action = submitter?.value === "register" ? api.register : api.login;
    setBusy(true);
    setFailure(null);
    try {
      onAuthenticated((await action(username, phrase)).user);
    } catch (error) {
      setFailure(error instanceof ApiError ? error : new ApiError(0, "unknown", String(error)));
    } finally {
      setBusy(false);
    }
  }

  const fields = failure?.fields ?? {};
  const general = failure && !fields.username && !fields.phrase ? failure.message : null;
  return (
    <main className="auth">
      <h1>Secure Link</h1>
      <p className="lede">Private 1:1 chat. Messages last until either of you logs out.</p>
      <form onSubmit={submit} aria-label="Log in or register" noValidate>
        <Field label="Username" name="username" autoComplete="username" autoCapitalize="none" required
               value={username} onChange={(e) => setUsername(e.target.value)} hint={USERNAME_RULES} error={fields.username} />
        <Field label="Phrase" name="phrase" type="password" autoComplete="current-password" required
               value={phrase} onChange={(e) => setPhrase(e.target.value)} hint={PHRASE_RULES} error={fields.phrase} />
        {general && <p role="alert" className="error">{general}</p>}
        <div className="actions">
          <button type="submit" value="login" disabled={busy}>Log in</button>
          <button type="submit" value="register" className="secondary" disabled={busy}>Register</button>
        </div>
      </form>
    </main>
  );
}

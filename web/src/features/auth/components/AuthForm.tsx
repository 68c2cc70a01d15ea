import { useEffect, useState, type FormEvent } from "react";
import { Field } from "../../../components/Field";
import { PHRASE_RULES } from "../../../components/rules";
import { api, type User } from "../../../lib/api";
import { failureOf, offers, type Failure, type Mode } from "../registration";

const USERNAME_RULES = "3 to 32 of a–z, 0–9, _ . -";
const INVITE_HINT = "Registering here needs an invite: open the link you were sent, or paste its code.";

interface AuthFormProps {
  onAuthenticated: (user: User) => void;
  invite: string;          // the code an invite link opened the page with, or ""
  notice: string | null;   // why the last session ended, said once on this screen
}

/** The server's registration mode; `unknown` until it answers, and if it cannot. */
function useMode(): [Mode, (mode: Mode) => void] {
  const [mode, setMode] = useState<Mode>("unknown");
  useEffect(() => {
    let current = true;
    api.registration().then(({ mode }) => current && setMode(mode), () => undefined);
    return () => { current = false; };
  }, []);
  return [mode, setMode];
}

/** Register or log in with one form: the button pressed decides which. Registration follows the
 *  server's mode: an *Invite code* field in invite mode, a notice instead of Register when closed. */
export function AuthForm({ onAuthenticated, invite: invited, notice }: AuthFormProps) {
  const [username, setUsername] = useState("");
  const [phrase, setPhrase] = useState("");
  const [invite, setInvite] = useState(invited);
  const [failure, setFailure] = useState<Failure | null>(null);
  const [busy, setBusy] = useState(false);
  const [mode, setMode] = useMode();
  const offer = offers(mode);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const submitter = (event.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
    const registering = submitter?.value === "register";
    setBusy(true);
    setFailure(null);
    try {
      const answer = registering ? await api.register(username, phrase, offer.invite ? invite : undefined)
        : await api.login(username, phrase);
      onAuthenticated(answer.user);
    } catch (error) {
      const found = failureOf(error);
      if (found.mode) setMode(found.mode);
      setFailure(found);
    } finally {
      setBusy(false);
    }
  }

  const fields = failure?.fields ?? {};
  const welcome = invited && mode === "invite";
  const register = <button type="submit" value="register" className={welcome ? undefined : "secondary"} disabled={busy}>Register</button>;
  const login = <button type="submit" value="login" className={welcome ? "secondary" : undefined} disabled={busy}>Log in</button>;
  return (
    <main className="auth">
      <h1>Secure Link</h1>
      <p className="lede">Private 1:1 chat. Messages last until either of you logs out.</p>
      {notice && <p role="status" className="notice-box">{notice}</p>}
      {welcome && <p className="invited">You were invited. Choose a username and a phrase, then Register.</p>}
      <form onSubmit={submit} aria-label="Log in or register" noValidate>
        <Field label="Username" name="username" autoComplete="username" autoCapitalize="none" required
               value={username} onChange={(e) => setUsername(e.target.value)} hint={USERNAME_RULES} error={fields.username} />
        <Field label="Phrase" name="phrase" type="password" autoComplete={welcome ? "new-password" : "current-password"} required
               value={phrase} onChange={(e) => setPhrase(e.target.value)} hint={PHRASE_RULES} error={fields.phrase} />
        {offer.invite && (
          <Field label="Invite code" name="invite" autoComplete="off" autoCapitalize="none" spellCheck={false}
                 value={invite} onChange={(e) => setInvite(e.target.value.trim())} hint={INVITE_HINT} error={fields.invite} />
        )}
        {failure?.general && <p role="alert" className="error">{failure.general}</p>}
        {mode === "closed" && (
          <p className="closed">Registration is closed on this server: only people who already have an account can log in.</p>
        )}
        <div className="actions">
          {welcome ? <>{register}{login}</> : <>{login}{offer.register && register}</>}
        </div>
      </form>
    </main>
  );
}

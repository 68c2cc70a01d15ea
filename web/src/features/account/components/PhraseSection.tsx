import { useState, type FormEvent } from "react";
import { Field } from "../../../components/Field";
import { PHRASE_RULES } from "../../../components/rules";
import { phraseErrors, type PhraseErrors } from "../refusals";

interface PhraseSectionProps {
  username: string;
  onChange: (phrase: string, newPhrase: string) => Promise<void>;
  onChanged: () => void;  // the other sessions have ended: what lists them should ask again
}

/** *Change phrase*: the current phrase, and the new one twice (a typo would lock the person out).
 *  Every other session ends; this one stays. */
export function PhraseSection({ username, onChange, onChanged }: PhraseSectionProps) {
  const [phrase, setPhrase] = useState("");
  const [newPhrase, setNewPhrase] = useState("");
  const [again, setAgain] = useState("");
  const [errors, setErrors] = useState<PhraseErrors>({});
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setDone(false);
    if (newPhrase !== again) return setErrors({ again: "This is not the new phrase typed above: type the same phrase twice." });
    setBusy(true);
    setErrors({});
    try {
      await onChange(phrase, newPhrase);
      setPhrase("");
      setNewPhrase("");
      setAgain("");
      setDone(true);
      onChanged();
    } catch (failure) {
      setErrors(phraseErrors(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="phrase-title" className="account-section">
      <h3 id="phrase-title">Phrase</h3>
      <form onSubmit={submit} className="narrow" noValidate aria-labelledby="phrase-title">
        <input type="text" name="username" autoComplete="username" value={username} readOnly hidden />
        <Field label="Current phrase" name="phrase" type="password" autoComplete="current-password" required
               value={phrase} onChange={(e) => setPhrase(e.target.value)} error={errors.phrase} />
        <Field label="New phrase" name="new_phrase" type="password" autoComplete="new-password" required
               value={newPhrase} onChange={(e) => setNewPhrase(e.target.value)} hint={PHRASE_RULES} error={errors.newPhrase} />
        <Field label="New phrase, again" name="new_phrase_again" type="password" autoComplete="new-password" required
               value={again} onChange={(e) => setAgain(e.target.value)} error={errors.again} />
        {errors.form && <p role="alert" className="error">{errors.form}</p>}
        <div className="actions">
          <button type="submit" disabled={busy}>Change phrase</button>
        </div>
        <p className="hint" aria-live="polite">
          {done ? "Your phrase is changed. Every other device you were logged in on is logged out: log in there with the new phrase." : ""}
        </p>
      </form>
    </section>
  );
}

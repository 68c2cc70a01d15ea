import { useRef, useState, type FormEvent } from "react";
import { flushSync } from "react-dom";
import { Field } from "../../../components/Field";
import { formatDuration } from "../../../components/format";
import { TimerIcon } from "../../../components/TimerIcon";
import { ApiError, explain } from "../../../lib/api";
import type { TimerSetting } from "../../../lib/store";
import { setter } from "./TimerNotice";

interface TimerControlProps {
  setting: TimerSetting;
  me: string;
  onOpen: () => Promise<void>;  // loads who set the timer and when
  onSave: (seconds: number) => Promise<void>;
}

const PRESETS = [0, 30, 300, 3_600, 86_400, 604_800, 2_419_200];
const MAX_SECONDS = 2_419_200;
const OTHER = "other";

const label = (seconds: number) => (seconds === 0 ? "Off" : formatDuration(seconds));

/** The conversation's disappearing-messages timer: a button saying what it is, and a dialog to change it. */
export function TimerControl({ setting, me, onOpen, onSave }: TimerControlProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [choice, setChoice] = useState("0");
  const [other, setOther] = useState("");
  const [error, setError] = useState<{ seconds?: string; form?: string; load?: string }>({});
  const [busy, setBusy] = useState(false);

  function open() {
    const preset = PRESETS.includes(setting.seconds);
    flushSync(() => {  // so the current length's radio is the checked one when it takes the focus
      setChoice(preset ? String(setting.seconds) : OTHER);
      setOther(preset ? "" : String(setting.seconds));
      setError({});
    });
    dialog.current?.showModal();
    dialog.current?.querySelector<HTMLInputElement>("input[type=radio]:checked")?.focus();
    // who set it is a nicety, the choice works without it; but a failure is said, not hidden
    onOpen().catch((failure) => setError((shown) => ({ ...shown, load: explain(failure, "Who set the timer could not be loaded") })));
  }

  async function save(event: FormEvent) {
    event.preventDefault();
    const seconds = choice === OTHER ? Number(other) : Number(choice);
    if (choice === OTHER && !(Number.isInteger(seconds) && seconds >= 1 && seconds <= MAX_SECONDS)) {
      return setError({ seconds: `A whole number of seconds from 1 to ${MAX_SECONDS.toLocaleString()} (four weeks).` });
    }
    setBusy(true);
    try {
      await onSave(seconds);
      dialog.current?.close();
    } catch (failure) {
      const api = failure instanceof ApiError ? failure : null;
      const message = api?.fields.seconds ?? explain(failure, "The timer was not changed");
      setError(choice === OTHER && api?.fields.seconds ? { seconds: message } : { form: message });
    } finally {
      setBusy(false);
    }
  }

  const who = setter(setting, me);
  return (
    <>
      <button type="button" className="secondary timer" aria-haspopup="dialog" onClick={open}>
        <TimerIcon /> <span className="wide-only">Timer: </span>{label(setting.seconds).toLowerCase()}
      </button>
      <dialog ref={dialog} aria-labelledby="timer-title" aria-describedby="timer-text">
        <form onSubmit={save}>
          <h2 id="timer-title">Disappearing messages</h2>
          <p id="timer-text">
            Messages sent from now on disappear for both of you this long after they are sent.
            Messages already sent keep their own time.
          </p>
          <p className="hint">{setting.seconds === 0 ? "Now off." : `Now ${formatDuration(setting.seconds)}.`} {who}</p>
          {error.load && <p className="error" role="alert">{error.load}</p>}
          <fieldset className="choices">
            <legend>Messages disappear after</legend>
            {PRESETS.map((seconds) => (
              <label key={seconds}>
                <input type="radio" name="timer" value={seconds} checked={choice === String(seconds)}
                       onChange={() => setChoice(String(seconds))} />
                {seconds === 0 ? "Off (never)" : formatDuration(seconds)}
              </label>
            ))}
            <label>
              <input type="radio" name="timer" value={OTHER} checked={choice === OTHER} onChange={() => setChoice(OTHER)} />
              Other
            </label>
          </fieldset>
          {choice === OTHER && (
            <Field label="Seconds" type="number" inputMode="numeric" min={1} max={MAX_SECONDS} step={1} required
                   value={other} onChange={(e) => setOther(e.target.value)} error={error.seconds} />
          )}
          {error.form && <p className="error" role="alert">{error.form}</p>}
          <div className="actions">
            <button type="submit" disabled={busy}>Save</button>
            <button type="button" className="secondary" onClick={() => dialog.current?.close()}>Cancel</button>
          </div>
        </form>
      </dialog>
    </>
  );
}

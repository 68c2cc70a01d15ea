import { formatDuration, formatWhen } from "../../../components/format";
import type { TimerSetting } from "../../../lib/store";

export function setter(setting: TimerSetting, me: string): string {
  if (!setting.setBy) return "";
  const who = setting.setBy === me ? "you" : setting.setBy;
  return setting.setAt ? `Set by ${who}, ${formatWhen(setting.setAt)}.` : `Set by ${who}.`;
}

/** While a timer is on, say so under the chat's header, and who set it; read out when it changes. */
export function TimerNotice({ setting, me }: { setting: TimerSetting; me: string }) {
  return (
    <p className="timer-notice" aria-live="polite">
      {setting.seconds > 0 && `New messages disappear ${formatDuration(setting.seconds)} after they are sent. ${setter(setting, me)}`}
    </p>
  );
}

import { useState, useSyncExternalStore } from "react";
import type { Permission } from "../../../lib/attention";
import type { Preferences, Prefs } from "../../../lib/prefs";

interface NotificationSettingsProps {
  prefs: Prefs;
  permission: () => Permission;
  onEnable: () => Promise<void>;
  onSound: (on: boolean) => void;
}

/** Being told of new messages while the tab is hidden: notifications (asked for only from the
 *  button that says so), their text (off: a notification shows on a locked screen), and a tone. */
export function NotificationSettings({ prefs, permission, onEnable, onSound }: NotificationSettingsProps) {
  const current = useSyncExternalStore(prefs.subscribe, prefs.get);
  const [allowed, setAllowed] = useState(permission);

  async function enable() {
    await onEnable();
    setAllowed(permission());
  }

  const toggle = (key: keyof Preferences) => (event: React.ChangeEvent<HTMLInputElement>) =>
    prefs.set({ [key]: event.target.checked });

  return (
    <section aria-labelledby="notifications-title" className="account-section">
      <h3 id="notifications-title">Notifications</h3>
      {allowed === "unsupported" && <p className="hint">This browser cannot show notifications.</p>}
      {allowed === "denied" && (
        <p className="hint">Notifications are blocked for this site: allow them in the browser's site settings.</p>
      )}
      {allowed === "default" && (
        <p>
          <button type="button" className="secondary" onClick={enable}>Enable notifications</button>{" "}
          <span className="hint">The browser will ask you to allow them.</span>
        </p>
      )}
      {allowed === "granted" && (
        <>
          <label className="check">
            <input type="checkbox" checked={current.notify} onChange={toggle("notify")} />
            Notify me of new messages while this tab is hidden
          </label>
          <label className="check">
            <input type="checkbox" checked={current.showText} onChange={toggle("showText")} disabled={!current.notify} />
            Show the message's text in notifications (others may see your screen)
          </label>
        </>
      )}
      <label className="check">
        <input type="checkbox" checked={current.sound} onChange={(event) => onSound(event.target.checked)} />
        Play a sound for new messages while this tab is hidden
      </label>
    </section>
  );
}

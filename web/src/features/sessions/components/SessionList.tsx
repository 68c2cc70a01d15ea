import { useEffect, useState } from "react";
import { formatWhen } from "../../../components/format";
import { api, explain, type Session } from "../../../lib/api";
import { describeAgent } from "../../../lib/userAgent";

/** The user's sessions, named as people name devices ("Firefox on Linux"), so one left logged in
 *  elsewhere can be recognised and revoked. */
export function SessionList() {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<number | null>(null);

  async function refresh() {
    setError(null);
    try {
      setSessions((await api.sessions()).sessions);
    } catch (failure) {
      setError(explain(failure, "Your sessions could not be loaded"));
    }
  }

  async function revoke(session: Session) {
    setBusy(session.id);
    setError(null);
    try {
      await api.revokeSession(session.id);
      await refresh();
    } catch (failure) {
      setError(explain(failure, `${describeAgent(session.user_agent)} is still logged in`));
    } finally {
      setBusy(null);
    }
  }

  useEffect(() => { void refresh(); }, []);

  return (
    <section aria-labelledby="sessions-title" className="account-section">
      <h3 id="sessions-title">Sessions</h3>
      {error && (
        <div role="alert" className="load-error">
          <span>{error}</span>
          {sessions === null && <button type="button" className="secondary" onClick={refresh}>Retry</button>}
        </div>
      )}
      {sessions === null && !error && <p className="loading"><span className="spinner" aria-hidden="true" />Loading sessions…</p>}
      <ul className="sessions">
        {sessions?.map((session) => (
          <li key={session.id}>
            <span>
              <span title={session.user_agent}>{describeAgent(session.user_agent)}</span><br />
              <small>{session.address} · last used {formatWhen(session.last_used_at)}</small>
            </span>
            {session.current
              ? <strong>This device</strong>
              : <button type="button" className="secondary" onClick={() => revoke(session)} disabled={busy === session.id}
                        aria-label={`Revoke ${describeAgent(session.user_agent)}, last used ${formatWhen(session.last_used_at)}`}>Revoke</button>}
          </li>
        ))}
      </ul>
    </section>
  );
}

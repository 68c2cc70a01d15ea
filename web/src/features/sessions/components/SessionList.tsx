import { useEffect, useState } from "react";
import { api, ApiError, type Session } from "../../../lib/api";

function device(session: Session): string {
  const agent = session.user_agent || "Unknown device";
  return agent.length > 60 ? `${agent.slice(0, 57)}…` : agent;
}

/** The user's sessions, so one left logged in elsewhere can be revoked. */
export function SessionList() {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function refresh() {
    try {
      setSessions((await api.sessions()).sessions);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : "Could not load sessions.");
    }
  }

  async function revoke(id: number) {
    await api.revokeSession(id).catch(() => undefined);
    await refresh();
  }

  useEffect(() => { void refresh(); }, []);

  return (
    <section aria-labelledby="sessions-title">
      <h3 id="sessions-title">Sessions</h3>
      {error && <p role="alert" className="error">{error}</p>}
      <ul className="sessions">
        {sessions?.map((session) => (
          <li key={session.id}>
            <span>{device(session)}<br /><small>{session.address} · last used {new Date(session.last_used_at).toLocaleString()}</small></span>
            {session.current
              ? <strong>This device</strong>
              : <button type="button" className="secondary" onClick={() => revoke(session.id)}
                        aria-label={`Revoke session ${session.id}`}>Revoke</button>}
          </li>
        ))}
      </ul>
    </section>
  );
}

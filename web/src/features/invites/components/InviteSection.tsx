import { useEffect, useState } from "react";
import { api, ApiError, explain, type Invite, type RegistrationMode } from "../../../lib/api";
import { inviteName, inviteTerms, limitNote, liveInvites, modeNote, withInvite, withoutInvite } from "../invites";

/** *Invite someone*: a link that lets one person register, shown with *Copy*; the live invites,
 *  each with *Revoke*. */
export function InviteSection() {
  const [invites, setInvites] = useState<Invite[] | null>(null);
  const [limit, setLimit] = useState<number | null>(null);
  const [mode, setMode] = useState<RegistrationMode | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const [said, setSaid] = useState("");  // what the last action did, read out
  const [busy, setBusy] = useState(false);

  async function load() {
    setLoadError(null);
    try {
      const answer = await api.invites();
      setInvites(answer.invites);
      setLimit(answer.limit);
    } catch (failure) {
      setLoadError(explain(failure, "Your invites could not be loaded"));
    }
  }

  useEffect(() => {
    void load();
    api.registration().then(({ mode }) => setMode(mode), () => undefined);
  }, []);

  async function create() {
    setBusy(true);
    setError(null);
    setCreated(null);
    setSaid("");
    try {
      const invite = await api.createInvite();
      setInvites((known) => withInvite(known ?? [], invite));
      setCreated(invite.code);
      setSaid("Invite link made: copy it and send it to the person you are inviting.");
    } catch (failure) {
      setError(explain(failure, "No invite was made"));
    } finally {
      setBusy(false);
    }
  }

  async function revoke(invite: Invite) {
    setError(null);
    try {
      await api.revokeInvite(invite.code);
    } catch (failure) {  // 404: used up or expired meanwhile, so it is not live either
      if (!(failure instanceof ApiError && failure.code === "not_found")) {
        return setError(explain(failure, `${inviteName(invite)} was not revoked`));
      }
    }
    setInvites((known) => withoutInvite(known ?? [], invite.code));
    if (created === invite.code) setCreated(null);
    setSaid(`Revoked ${inviteName(invite)}: it can no longer be used.`);
  }

  async function copy(invite: Invite) {
    try {
      await navigator.clipboard.writeText(invite.url);
      setSaid(`Copied ${inviteName(invite)}.`);
    } catch {
      (document.getElementById(`invite-${invite.code}`) as HTMLInputElement | null)?.select();
      setSaid(`The browser did not allow copying: ${inviteName(invite)} is selected, copy it yourself.`);
    }
  }

  const shown = invites ? liveInvites(invites, Date.now()) : [];
  const note = modeNote(mode);
  const full = limitNote(limit, shown.length);
  return (
    <section aria-labelledby="invites-title" className="account-section">
      <h3 id="invites-title">Invites</h3>
      <p className="hint">An invite link lets one person register here, within a week. Send it only to them: whoever has
        the link can use it.</p>
      {note && <p className="hint">{note}</p>}
      {full && <p className="hint">{full}</p>}
      <div className="actions">
        <button type="button" onClick={create} disabled={busy || mode === "closed" || full !== null}>Invite someone</button>
      </div>
      {error && <p role="alert" className="error">{error}</p>}
      <p className="hint said" aria-live="polite">{said}</p>
      {loadError && (
        <div role="alert" className="load-error">
          <span>{loadError}</span>
          <button type="button" className="secondary" onClick={load}>Retry</button>
        </div>
      )}
      {invites === null && !loadError && <p className="loading"><span className="spinner" aria-hidden="true" />Loading invites…</p>}
      {shown.length > 0 && (
        <ul className="rows invites" aria-label="Your live invites">
          {shown.map((invite) => (
            <li key={invite.code} className={invite.code === created ? "fresh" : undefined}>
              <span className="invite">
                <input id={`invite-${invite.code}`} readOnly value={invite.url} aria-label={inviteName(invite)}
                       onFocus={(event) => event.target.select()} />
                <small>{inviteTerms(invite)}</small>
              </span>
              <button type="button" className="secondary" onClick={() => copy(invite)} aria-label={`Copy ${inviteName(invite)}`}>Copy</button>
              <button type="button" className="secondary" onClick={() => revoke(invite)} aria-label={`Revoke ${inviteName(invite)}`}>Revoke</button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

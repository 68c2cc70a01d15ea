// The account's live invites as the Invites section keeps them: newest first, one per code, and
// only while they can still be used (the server lists only those; a page left open outlives some).
import { formatWhen } from "../../components/format";
import type { Invite, RegistrationMode } from "../../lib/api";

/** A new invite goes first; the same code again replaces its older copy. */
export function withInvite(invites: Invite[], invite: Invite): Invite[] {
  return [invite, ...invites.filter((known) => known.code !== invite.code)];
}

export function withoutInvite(invites: Invite[], code: string): Invite[] {
  return invites.filter((known) => known.code !== code);
}

/** Live: not expired and with a use left (a revoked one has left the list already). */
export function liveInvites(invites: Invite[], now: number): Invite[] {
  return invites.filter((invite) => invite.uses_left > 0 && Date.parse(invite.expires_at) > now);
}

/** What tells two links apart for a person (and a screen reader): the end of their code. */
export function inviteName(invite: Invite): string {
  return `the invite link ending in ${invite.code.slice(-4)}`;
}

export function inviteTerms(invite: Invite): string {
  const uses = invite.uses_left === 1 ? "1 use left" : `${invite.uses_left} uses left`;
  return `${uses}, until ${formatWhen(invite.expires_at)}`;
}

/** What the server's registration mode means for invites, or null when they work as they say. */
/** Why *Invite someone* cannot make another invite, or null when it can: the server's limit of live
 *  invites a person may hold (`INVITES_PER_USER`, 0: only the operator invites). */
export function limitNote(limit: number | null, live: number): string | null {
  if (limit === null) return null;
  if (limit === 0) return "Only the server's operator invites people here.";
  if (live >= limit) return `You have ${limit} live invites, as many as this server allows: revoke one to make another.`;
  return null;
}

export function modeNote(mode: RegistrationMode | null): string | null {
  if (mode === "open") return "Registration is open on this server: anyone can register, with or without an invite.";
  if (mode === "closed") return "Registration is closed on this server: nobody can register, not even with an invite.";
  return null;
}

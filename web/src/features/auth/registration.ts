// What the login form shows of registration (contract v1.2): the server's mode, an invite code
// from the address an invite link opens, and each refusal by the field it is about.
import { ApiError, type RegistrationMode } from "../../lib/api";

/** `unknown` until `GET /api/registration/` answers (or when it cannot): Register is offered,
 *  and the server's refusal, if any, says which mode it is. */
export type Mode = RegistrationMode | "unknown";

export type FieldName = "username" | "phrase" | "invite";

/** A refusal as the form shows it: by field, or for the whole form; and the mode it revealed. */
export interface Failure {
  fields: Partial<Record<FieldName, string>>;
  general: string | null;
  mode: Mode | null;
}

/** The code an invite link carries (`/?invite=CODE`), or "" without one. */
export function inviteFromAddress(search: string): string {
  return (new URLSearchParams(search).get("invite") ?? "").trim();
}

const INVITE_REFUSALS = new Set(["invite_required", "invite_invalid"]);

/** Where a refusal of login or registration goes: the server's words by the field at fault. */
export function failureOf(error: unknown): Failure {
  if (!(error instanceof ApiError)) return { fields: {}, general: String(error), mode: null };
  if (INVITE_REFUSALS.has(error.code)) return { fields: { invite: error.message }, general: null, mode: "invite" };
  if (error.code === "registration_closed") return { fields: {}, general: error.message, mode: "closed" };
  const fields: Failure["fields"] = {};
  if (error.fields.username) fields.username = error.fields.username;
  if (error.fields.phrase) fields.phrase = error.fields.phrase;
  if (error.fields.invite) fields.invite = error.fields.invite;
  const general = Object.keys(fields).length ? null : error.message;
  return { fields, general, mode: null };
}

/** Register is offered unless registration is closed; an invite code is asked for in invite mode. */
export function offers(mode: Mode): { register: boolean; invite: boolean } {
  return { register: mode !== "closed", invite: mode === "invite" };
}

// Where the server's refusals of the account's own changes are shown: by the field at fault, or
// for the whole form, in words a person can act on.
import { ApiError, explain } from "../../lib/api";

export type PhraseErrors = { phrase?: string; newPhrase?: string; again?: string; form?: string };

/** Where a refusal of a change of phrase goes: a wrong current phrase by its field, the new
 *  phrase's rules by the new one, anything else (a throttle, offline) for the form. */
export function phraseErrors(failure: unknown): PhraseErrors {
  if (failure instanceof ApiError && failure.code === "invalid_credentials") return { phrase: failure.message };
  if (failure instanceof ApiError && failure.fields.new_phrase) return { newPhrase: failure.fields.new_phrase };
  return { form: explain(failure, "Your phrase was not changed") };
}

export type DeleteErrors = { phrase?: string; form?: string };

/** Where a refusal of a deletion goes: a wrong phrase by its field; offline, said as "nothing
 *  was deleted"; anything else for the form. */
export function deleteErrors(failure: unknown): DeleteErrors {
  if (failure instanceof ApiError && failure.code === "invalid_credentials") return { phrase: failure.message };
  if (failure instanceof ApiError && failure.status === 0) {
    return { form: "You are offline, so nothing was deleted. Try again once you are back online." };
  }
  return { form: explain(failure, "Nothing was deleted") };
}

import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/api";
import { deleteErrors, phraseErrors } from "./refusals";

describe("the account's refusals", () => {
  it("puts a wrong current phrase by its field, and the new phrase's rules by the new one", () => {
    expect(phraseErrors(new ApiError(401, "invalid_credentials", "Wrong phrase."))).toEqual({ phrase: "Wrong phrase." });
    const rules = new ApiError(422, "invalid_input", "Invalid input.", { new_phrase: "needs at least 3 words" });
    expect(phraseErrors(rules)).toEqual({ newPhrase: "needs at least 3 words" });
    expect(phraseErrors(new ApiError(429, "rate_limited", "Too many tries."))).toEqual(
      { form: "Your phrase was not changed: Too many tries. Try again in a moment." });
  });

  it("says a deletion offline deleted nothing, and a wrong phrase by its field", () => {
    expect(deleteErrors(new ApiError(401, "invalid_credentials", "Wrong phrase."))).toEqual({ phrase: "Wrong phrase." });
    expect(deleteErrors(new ApiError(0, "network", "The server could not be reached."))).toEqual(
      { form: "You are offline, so nothing was deleted. Try again once you are back online." });
  });
});

// The login form and registration modes (v1.2).
import { describe, expect, it } from "vitest";
import { ApiError } from "../../lib/api";
import { failureOf, inviteFromAddress, offers } from "./registration";

describe("registration", () => {
  it("reads an invite link's code from the address", () => {
    expect(inviteFromAddress("?invite=AbC-123_xyz")).toBe("AbC-123_xyz");
    expect(inviteFromAddress("?other=1&invite=%20code%20")).toBe("code");
    expect(inviteFromAddress("")).toBe("");
  });

  it("offers Register and an invite code as the mode says", () => {
    expect(offers("open")).toEqual({ register: true, invite: false });
    expect(offers("invite")).toEqual({ register: true, invite: true });
    expect(offers("closed")).toEqual({ register: false, invite: false });
    expect(offers("unknown")).toEqual({ register: true, invite: false });  // the server's refusal will say
  });

  it("shows an invite refusal by the Invite code field, in the server's words", () => {
    for (const code of ["invite_invalid", "invite_required"]) {
      const failure = failureOf(new ApiError(403, code, "That invite code cannot be used."));
      expect(failure).toEqual({ fields: { invite: "That invite code cannot be used." }, general: null, mode: "invite" });
    }
  });

  it("learns that registration is closed from the refusal", () => {
    expect(failureOf(new ApiError(403, "registration_closed", "Registration is closed."))).toEqual(
      { fields: {}, general: "Registration is closed.", mode: "closed" });
  });

  it("puts field errors by their fields, and the rest for the form", () => {
    const invalid = new ApiError(422, "invalid_input", "Invalid input.", { phrase: "needs at least 3 words" });
    expect(failureOf(invalid)).toEqual({ fields: { phrase: "needs at least 3 words" }, general: null, mode: null });
    const taken = new ApiError(409, "username_taken", "That username is taken.");
    expect(failureOf(taken)).toEqual({ fields: {}, general: "That username is taken.", mode: null });
  });
});

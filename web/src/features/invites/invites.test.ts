import { describe, expect, it } from "vitest";
import type { Invite } from "../../lib/api";
import { inviteName, limitNote, liveInvites, modeNote, withInvite, withoutInvite } from "./invites";

const invite = (code: string, usesLeft = 1, expiresAt = "2026-02-08T10:00:00Z"): Invite =>
  ({ code, url: `https://chat.example/?invite=${code}`, uses_left: usesLeft, expires_at: expiresAt, created_at: "2026-02-01T10:00:00Z" });

describe("invites", () => {
  it("puts a new invite first, once", () => {
    const list = withInvite([invite("older-AAAA")], invite("newer-BBBB"));
    expect(list.map((i) => i.code)).toEqual(["newer-BBBB", "older-AAAA"]);
    expect(withInvite(list, invite("older-AAAA", 3)).map((i) => [i.code, i.uses_left]))
      .toEqual([["older-AAAA", 3], ["newer-BBBB", 1]]);
  });

  it("takes a revoked invite out", () => {
    expect(withoutInvite([invite("a-1111"), invite("b-2222")], "a-1111").map((i) => i.code)).toEqual(["b-2222"]);
  });

  it("shows only what can still be used", () => {
    const now = Date.parse("2026-02-05T00:00:00Z");
    const list = [invite("live-1111"), invite("used-2222", 0), invite("past-3333", 1, "2026-02-04T00:00:00Z")];
    expect(liveInvites(list, now).map((i) => i.code)).toEqual(["live-1111"]);
  });

  it("names each link by the end of its code, for Copy and Revoke", () => {
    expect(inviteName(invite("x".repeat(28) + "Q7-z"))).toBe("the invite link ending in Q7-z");
  });

  it("says when the server's mode makes invites needless or useless", () => {
    expect(modeNote("invite")).toBeNull();
    expect(modeNote("open")).toMatch(/anyone can register/);
    expect(modeNote("closed")).toMatch(/not even with an invite/);
  });

  it("says when the server's limit leaves no invite to make, and only then", () => {
    expect(limitNote(null, 3)).toBeNull();  // not loaded yet
    expect(limitNote(5, 4)).toBeNull();
    expect(limitNote(5, 5)).toMatch(/revoke one/);
    expect(limitNote(0, 0)).toMatch(/operator/);
  });
});

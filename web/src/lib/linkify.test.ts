import { describe, expect, it } from "vitest";
import { linkify } from "./linkify";

describe("linkify", () => {
  it("links http, https and www addresses, leaving sentence punctuation outside", () => {
    expect(linkify("see https://example.org/a?b=1, then www.example.com.")).toEqual([
      { text: "see " }, { text: "https://example.org/a?b=1", href: "https://example.org/a?b=1" },
      { text: ", then " }, { text: "www.example.com", href: "https://www.example.com/" }, { text: "." },
    ]);
  });

  it("keeps a parenthesis that belongs to the address", () => {
    expect(linkify("(https://en.wikipedia.org/wiki/Tea_(meal))")[1]).toEqual(
      { text: "https://en.wikipedia.org/wiki/Tea_(meal)", href: "https://en.wikipedia.org/wiki/Tea_(meal)" });
  });

  it("never links another scheme, and leaves markup as text", () => {
    for (const text of ["javascript:alert(1)", "data:text/html,<b>x</b>", "<a href=x>y</a>", "file:///etc/passwd"]) {
      expect(linkify(text)).toEqual([{ text }]);
    }
  });
});

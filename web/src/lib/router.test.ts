import { describe, expect, it } from "vitest";
import { parseRoute, routePath, Router, type HistoryLike } from "./router";

/** The browser's history, as far as the router uses it: a stack of entries and a position. */
class FakeHistory implements HistoryLike {
  entries: { state: unknown; url: string }[] = [{ state: null, url: "/chat/bob" }];
  index = 0;
  get state() { return this.entries[this.index].state; }
  get path() { return this.entries[this.index].url; }
  pushState(state: unknown, _: string, url: string) {
    this.entries = [...this.entries.slice(0, this.index + 1), { state, url }];
    this.index += 1;
  }
  replaceState(state: unknown, _: string, url?: string) { this.entries[this.index] = { state, url: url ?? this.path }; }
  back() { this.index = Math.max(0, this.index - 1); }
}

describe("routes", () => {
  it("gives each screen an address and reads it back", () => {
    for (const route of [{ screen: "list" }, { screen: "account" }, { screen: "chat", peer: "bob.smith-2" }] as const) {
      expect(parseRoute(routePath(route))).toEqual(route);
    }
    expect(parseRoute("/chat/Bob/")).toEqual({ screen: "chat", peer: "bob" });
    expect(parseRoute("/chat/%E0%A4%A")).toEqual({ screen: "list" });  // a broken escape names nobody
    expect(parseRoute("/nowhere")).toEqual({ screen: "list" });
  });
});

describe("Router", () => {
  it("starts at the address it was opened at and keeps it (a query stays for later features)", () => {
    const history = new FakeHistory();
    const router = new Router(history, () => history.path);
    expect(router.current()).toEqual({ screen: "chat", peer: "bob" });
    expect(history.path).toBe("/chat/bob");
  });

  it("pushes one entry per move, so Back returns to the list and the app's own back arrow does too", () => {
    const history = new FakeHistory();
    history.entries = [{ state: null, url: "/" }];
    const router = new Router(history, () => history.path);
    let changes = 0;
    router.subscribe(() => { changes += 1; });
    router.go({ screen: "chat", peer: "bob" });
    router.go({ screen: "chat", peer: "bob" });  // the same screen again: no new entry
    expect(history.entries.map((e) => e.url)).toEqual(["/", "/chat/bob"]);
    router.back();
    router.popped();
    expect(router.current()).toEqual({ screen: "list" });
    expect(changes).toBe(2);
  });

  it("opened straight at a chat, its back arrow replaces it with the list rather than leave the app", () => {
    const history = new FakeHistory();
    const router = new Router(history, () => history.path);
    router.back();
    expect(history.entries.map((e) => e.url)).toEqual(["/"]);
    expect(router.current()).toEqual({ screen: "list" });
  });
});

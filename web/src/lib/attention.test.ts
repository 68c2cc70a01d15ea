import { describe, expect, it } from "vitest";
import type { Message, User } from "./api";
import { Attention, notificationBody, titleFor, type Notifier, type Page } from "./attention";
import { Prefs } from "./prefs";
import { Store } from "./store";

const alice: User = { id: 1, username: "alice", display_name: "alice", avatar_url: null, created_at: "2026-01-01T00:00:00Z" };
const hello: Message = { id: 7, from: "bob", to: "alice", message: "the secret is 42", attachment: null, client_id: null,
                         sent_at: "2026-01-01T00:00:00Z", expires_at: null };

function setup(hidden: boolean, permission: NotificationPermission, prefs: object) {
  const storage = new Map<string, string>([["secure-link:prefs", JSON.stringify(prefs)]]);
  const shown: { title: string; body: string }[] = [];
  let tones = 0;
  let title = "";
  let visibility = () => undefined as void;
  const notifier: Notifier = { permission: () => permission, request: async () => permission,
                               show: (t, body) => { shown.push({ title: t, body }); } };
  const page: Page = { setTitle: (t) => { title = t; }, hidden: () => hidden,
                       onVisibility: (listener) => { visibility = listener; return () => undefined; } };
  const store = new Store();
  store.dispatch({ type: "me", user: alice });
  const prefsHolder = new Prefs({ getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v) });
  const attention = new Attention(store, prefsHolder, notifier, page, () => { tones += 1; }, () => undefined);
  const stop = attention.start();
  return { store, attention, shown, tones: () => tones, title: () => title, setHidden: (h: boolean) => { hidden = h; visibility(); }, stop };
}

describe("attention", () => {
  it("puts the unread count in the title", () => {
    const { store, title } = setup(false, "granted", {});
    expect(title()).toBe("Secure Link");
    store.dispatch({ type: "message", message: hello });
    expect(title()).toBe("(1) Secure Link");
    expect(titleFor(12)).toBe("(12) Secure Link");
  });

  it("notifies while hidden, naming the sender, without the text unless chosen", () => {
    const quiet = setup(true, "granted", { notify: true });
    quiet.attention.incoming(hello);
    expect(quiet.shown).toEqual([{ title: "bob", body: "New message" }]);
    const chatty = setup(true, "granted", { notify: true, showText: true });
    chatty.attention.incoming(hello);
    expect(chatty.shown[0].body).toBe("the secret is 42");
    expect(notificationBody({ ...hello, message: "", attachment: { name: "a.png" } as Message["attachment"] }, true))
      .toBe("Attachment: a.png");
  });

  it("stays quiet while the tab is shown, without permission, or unless asked to", () => {
    for (const [hidden, permission, prefs] of [[false, "granted", { notify: true, sound: true }],
                                               [true, "denied", { notify: true }],
                                               [true, "granted", {}]] as const) {
      const { attention, shown, tones } = setup(hidden, permission, prefs);
      attention.incoming(hello);
      expect(shown).toEqual([]);
      expect(tones()).toBe(0);
    }
  });

  it("plays the tone while hidden when chosen, notifications or not", () => {
    const { attention, tones } = setup(true, "default", { sound: true });
    attention.incoming(hello);
    expect(tones()).toBe(1);
  });

  it("tells the store when the tab is hidden and shown again", () => {
    const { store, setHidden } = setup(false, "granted", {});
    setHidden(true);
    expect(store.getState().visible).toBe(false);
    setHidden(false);
    expect(store.getState().visible).toBe(true);
  });
});

// Per-conversation state (issue 27): what one conversation's screen holds never shows in another,
// and an unread count goes only when its messages are on screen.
import { describe, expect, it } from "vitest";
import type { Message, User } from "./api";
import { initialState, pendingTotal, reduce, unreadTotal, type Action, type State } from "./store";
import { emptyView } from "./views";

const user = (id: number, username: string): User =>
  ({ id, username, display_name: username, avatar_url: null, created_at: "2026-01-01T00:00:00Z" });
const alice = user(1, "alice");

function message(id: number, from = "bob", to = "alice"): Message {
  return { id, from, to, message: `m${id}`, attachment: null, client_id: null, sent_at: "2026-01-01T00:00:00Z", expires_at: null };
}

function run(...actions: Action[]): State {
  return actions.reduce(reduce, reduce(initialState, { type: "me", user: alice }));
}

const file = (name: string) => new File(["x"], name, { type: "image/png" });

describe("per-conversation views", () => {
  it("keeps a draft, a staged file and an upload with their own conversation", () => {
    const staged = { file: file("harbour.png"), preview: null };
    const state = run(
      { type: "draft", with: "bob", text: "for Bob only" },
      { type: "staged", with: "bob", staged },
      { type: "upload", with: "bob", upload: { name: "harbour.png", size: 1, fraction: 0.4 } },
      { type: "open", with: "carol" },
    );
    expect(state.views.carol ?? emptyView).toEqual(emptyView);
    expect(state.views.bob).toMatchObject({ draft: "for Bob only", staged, upload: { fraction: 0.4 } });
  });

  it("changes nothing, so nothing renders again, when a view is set to what it holds", () => {
    const state = run({ type: "draft", with: "bob", text: "same" });
    expect(reduce(state, { type: "draft", with: "bob", text: "same" })).toBe(state);
  });

  it("remembers where each conversation was scrolled", () => {
    const place = { follow: false, startKey: "m3", endKey: "m9", anchorKey: "m4", offset: -12 };
    const state = run({ type: "place", with: "bob", place }, { type: "open", with: "carol" }, { type: "open", with: "bob" });
    expect(state.views.bob.place).toEqual(place);
  });

  it("forgets every draft on logout", () => {
    expect(run({ type: "draft", with: "bob", text: "secret" }, { type: "me", user: null }).views).toEqual({});
  });
});

describe("unread counts and the new-messages marker", () => {
  const listed = (unread: number): Action => ({ type: "conversations", list: [
    { with: user(2, "bob"), last_message: message(5), unread, timer: 0 }] });
  const page: Action = { type: "history", with: "bob", messages: [1, 2, 3, 4, 5].map((id) => message(id)), hasMore: false, older: false };

  it("keeps the count until the history is shown: a slow or failed load clears nothing", () => {
    const opened = run(listed(2), { type: "open", with: "bob" }, { type: "historyLoading", with: "bob" });
    expect(opened.conversations.bob.unread).toBe(2);
    const failed = reduce(opened, { type: "historyFailed", with: "bob", error: "offline" });
    expect(failed.conversations.bob.unread).toBe(2);
    expect(failed.threads.bob).toMatchObject({ loading: false, error: "offline", loaded: false });
    const shown = reduce(failed, page);
    expect(shown.conversations.bob.unread).toBe(0);
    expect(shown.threads.bob.error).toBeNull();
  });

  it("marks the first unread message, and forgets the mark once the conversation is left", () => {
    const shown = run(listed(2), { type: "open", with: "bob" }, page);
    expect(shown.views.bob.marker).toBe(4);
    expect(reduce(shown, { type: "open", with: "carol" }).views.bob.marker).toBeNull();
  });

  it("moves the mark to the first unread message once an older page brings it in", () => {
    const newest: Action = { type: "history", with: "bob", messages: [4, 5].map((id) => message(id)), hasMore: true, older: false };
    const older: Action = { type: "history", with: "bob", messages: [1, 2, 3].map((id) => message(id)), hasMore: false, older: true };
    const shown = run(listed(4), { type: "open", with: "bob" }, newest);
    expect(shown.views.bob.marker).toBe(4);  // the first of the unread that are here
    expect(reduce(shown, older).views.bob.marker).toBe(2);
  });

  it("counts what arrives in the open conversation while the tab is hidden, and marks the first", () => {
    let state = run(listed(0), { type: "open", with: "bob" }, page, { type: "visible", visible: false },
                    { type: "message", message: message(6) }, { type: "message", message: message(7) });
    expect(unreadTotal(state)).toBe(2);
    expect(state.views.bob.marker).toBe(6);
    state = reduce(state, { type: "visible", visible: true });
    expect(unreadTotal(state)).toBe(0);
    expect(state.views.bob.marker).toBe(6);
  });

  it("counts pending sends over every conversation, not failed ones", () => {
    const pending = (to: string, clientId: string): Action => ({ type: "pending", entry: {
      id: null, client_id: clientId, from: "alice", to, message: "x", attachment: null, sent_at: "", expires_at: null } });
    const state = run(pending("bob", "c1"), pending("carol", "c2"), pending("carol", "c3"),
                      { type: "failed", client_id: "c3", reason: "refused" });
    expect(pendingTotal(state)).toBe(2);
  });
});

describe("presence and profiles", () => {
  it("does not list a conversation merely opened: only one with a message", () => {
    const state = run({ type: "open", with: "carol" });
    expect(state.conversations).toEqual({});
  });

  it("forgets a peer's presence when a logout clears the conversation: it is no longer told", () => {
    const state = run({ type: "presence", user: "bob", online: true }, { type: "cleared", with: "bob" });
    expect(state.presence.bob).toBeUndefined();
  });

  it("takes a lookup's presence unless a presence frame came after the lookup was asked", () => {
    const asked = run({ type: "presence", user: "bob", online: true });
    const asOf = asked.presences;
    const answered = reduce(asked, { type: "person", user: user(2, "bob"), online: true, asOf });
    expect(answered.presence.bob).toBe(true);
    const overtaken = reduce(reduce(asked, { type: "presence", user: "bob", online: false }),
                             { type: "person", user: user(2, "bob"), online: true, asOf });
    expect(overtaken.presence.bob).toBe(false);
    expect(overtaken.people.bob.username).toBe("bob");
  });

  it("takes a profile frame for a peer, and for oneself", () => {
    const renamed = { ...user(2, "bob"), display_name: "Bob B.", avatar_url: "/media/new" };
    expect(run({ type: "profile", user: renamed }).people.bob).toEqual(renamed);
    const me = { ...alice, display_name: "Alice A." };
    expect(run({ type: "profile", user: me }).me).toEqual(me);
  });
});

import { describe, expect, it } from "vitest";
import type { Entry } from "../../lib/entries";
import { around, following, growDown, growUp, hold, MAX, spanOf, STEP, WINDOW } from "./window";

const entries = (count: number, first = 1): Entry[] => Array.from({ length: count }, (_, index) => ({
  id: first + index, client_id: null, from: "bob", to: "alice", message: "", attachment: null, sent_at: "", expires_at: null,
}));

describe("the window of rows in the page", () => {
  it("follows the newest WINDOW rows however long the conversation", () => {
    expect(spanOf(entries(2_000), following)).toEqual({ start: 2_000 - WINDOW, end: 2_000 });
    expect(spanOf(entries(10), following)).toEqual({ start: 0, end: 10 });
  });

  it("holds its rows by key while newer ones arrive and older ones page in above", () => {
    const held = hold(entries(100), { start: 40, end: 100 });
    const longer = [...entries(50, -49), ...entries(100), ...entries(5, 101)];  // 50 older, 5 newer
    expect(spanOf(longer, held)).toEqual({ start: 90, end: 150 });
  });

  it("grows a step toward the edge the reader nears, never holding more than MAX rows", () => {
    const all = entries(1_000);
    let place = hold(all, { start: 900, end: 1_000 });
    for (let step = 0; step < 10; step += 1) place = growUp(all, spanOf(all, place), place);
    const span = spanOf(all, place);
    expect(span.end - span.start).toBe(MAX);
    expect(span.start).toBe(900 - 10 * STEP);
    place = growDown(all, span, place);
    expect(spanOf(all, place)).toEqual({ start: span.start + STEP, end: span.end + STEP });
  });

  it("opens a few rows before the first unread message", () => {
    const all = entries(500);
    expect(spanOf(all, around(all, "m201"))).toEqual({ start: 190, end: 190 + WINDOW });
  });
});

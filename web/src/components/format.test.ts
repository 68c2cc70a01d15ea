import { describe, expect, it } from "vitest";
import { dayKey, formatDay, formatDuration, formatFull, formatRemaining } from "./format";

describe("format", () => {
  it("names a timer in its largest whole unit", () => {
    expect([30, 300, 3_600, 86_400, 604_800, 2_419_200, 2, 90, 1].map(formatDuration)).toEqual(
      ["30 seconds", "5 minutes", "1 hour", "1 day", "1 week", "4 weeks", "2 seconds", "90 seconds", "1 second"]);
  });

  it("counts down in whole seconds, rounding up, coarser as it grows, never below zero", () => {
    expect([29_001, 1, 0, -5_000, 245_000, 7_800_000, 601_200_000].map(formatRemaining)).toEqual(
      ["0:30", "0:01", "0:00", "0:00", "4:05", "2 h 10 min", "6 d 23 h"]);
  });

  it("names a separator's day as people do, and gives the full date for hover", () => {
    const now = new Date(2026, 11, 7, 18, 0);  // Monday 7 December 2026, local time
    const day = (d: number, month = 11, year = 2026) => new Date(year, month, d, 9, 30).toISOString();
    expect(formatDay(day(7), now)).toBe("Today");
    expect(formatDay(day(6), now)).toBe("Yesterday");
    expect(formatDay(day(3), now)).toBe(new Date(2026, 11, 3).toLocaleDateString([], { weekday: "long" }));
    expect(formatDay(day(30, 10), now)).not.toMatch(/2026/);  // this year: no year
    expect(formatDay(day(30, 10, 2025), now)).toMatch(/2025/);
    expect(dayKey(day(7))).toBe(dayKey(new Date(2026, 11, 7, 23, 59).toISOString()));
    expect(dayKey(day(7))).not.toBe(dayKey(day(6)));
    expect(formatFull(day(3))).toMatch(/2026/);
  });
});

import { describe, expect, it } from "vitest";
import { formatDuration, formatRemaining } from "./format";

describe("format", () => {
  it("names a timer in its largest whole unit", () => {
    expect([30, 300, 3_600, 86_400, 604_800, 2_419_200, 2, 90, 1].map(formatDuration)).toEqual(
      ["30 seconds", "5 minutes", "1 hour", "1 day", "1 week", "4 weeks", "2 seconds", "90 seconds", "1 second"]);
  });

  it("counts down in whole seconds, rounding up, coarser as it grows, never below zero", () => {
    expect([29_001, 1, 0, -5_000, 245_000, 7_800_000, 601_200_000].map(formatRemaining)).toEqual(
      ["0:30", "0:01", "0:00", "0:00", "4:05", "2 h 10 min", "6 d 23 h"]);
  });
});

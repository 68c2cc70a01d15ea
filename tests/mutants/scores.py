"""Per-module mutmut scores from mutants/*.meta, for tests/mutants/README.md.

    python tests/mutants/scores.py          # after (or during) `mutmut run`

Score = killed (timeouts count as killed, as mutmut counts them) over killed
plus survived; mutants with no covering test are counted apart. When
mutants/sample.txt exists (tests/mutants/sample.py), the mutants checked are
split in two: the first pass (mutmut's quickest-first order, as far as it got)
and the random sample of the rest. The estimate for a whole module weighs the
sample's score by the number of mutants it was drawn from.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path(__file__).resolve().parents[2] / "mutants"


@dataclass
class Tally:
    """How many mutants ended in each verdict."""

    killed: int = 0
    survived: int = 0
    no_tests: int = 0
    unchecked: int = 0
    other: dict[str, int] = field(default_factory=dict)

    def add(self, status: str) -> None:
        if status in ("killed", "timeout"):
            self.killed += 1
        elif status == "survived":
            self.survived += 1
        elif status == "no tests":
            self.no_tests += 1
        elif status == "not checked":
            self.unchecked += 1
        else:
            self.other[status] = self.other.get(status, 0) + 1

    @property
    def scored(self) -> int:
        return self.killed + self.survived

    def score(self) -> str:
        return f"{self.killed}/{self.scored} = {100 * self.killed / self.scored:.0f} %" if self.scored else "-"


def wilson(killed: int, scored: int, z: float = 1.96) -> tuple[float, float]:
    """A 95 % interval for a proportion seen as killed/scored (Wilson's, fair at small counts)."""
    p = killed / scored
    centre = (p + z * z / (2 * scored)) / (1 + z * z / scored)
    half = z * math.sqrt(p * (1 - p) / scored + z * z / (4 * scored * scored)) / (1 + z * z / scored)
    return centre - half, centre + half


def main() -> int:
    """Print one Markdown table row per module."""
    sample_file = MUTANTS / "sample.txt"
    sample = set(sample_file.read_text().split()) if sample_file.exists() else set()
    print("| module | mutants | first pass: checked, score | sample: checked of left, score | estimate (95 %) | no tests | unchecked |")
    print("|---|---|---|---|---|---|---|")
    for meta in sorted((MUTANTS / "secure_link").rglob("*.py.meta")):  # the package's modules, at any depth
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        first, drawn = Tally(), Tally()
        for name, code in codes.items():
            (drawn if name in sample else first).add(status_by_exit_code[code])
        left = len(codes) - first.scored - first.no_tests  # what the sample was drawn from
        estimate = "-"
        if drawn.scored:
            low, high = wilson(drawn.killed, drawn.scored)
            rate = drawn.killed / drawn.scored
            whole = [100 * (first.killed + r * left) / (first.scored + left) for r in (rate, low, high)]
            estimate = "{:.0f} % ({:.0f}-{:.0f})".format(*whole)
        elif not first.unchecked:
            estimate = first.score().split(" = ")[-1]
        print(f"| `{meta.relative_to(MUTANTS / 'secure_link').as_posix()[:-5]}` | {len(codes)} | {first.scored + first.no_tests}, {first.score()} "
              f"| {drawn.scored + drawn.no_tests} of {left if drawn.scored else '-'}, {drawn.score()} "
              f"| {estimate} | {first.no_tests + drawn.no_tests} | {first.unchecked + drawn.unchecked} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

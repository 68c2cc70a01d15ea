"""Per-module mutmut scores from mutants/*.meta, for docs/testing.md.

    python tests/mutants/scores.py          # after (or during) `mutmut run`

Score = killed (timeouts count as killed, as mutmut counts them) over the
mutants checked; mutants with no covering test are listed apart, and the
ones not yet checked (an interrupted run) are counted, not scored.
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path(__file__).resolve().parents[2] / "mutants" / "secure_link"


def tally(meta: Path) -> collections.Counter[str]:
    """How many mutants of one module ended in each status."""
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return collections.Counter(status_by_exit_code[code] for code in codes.values())


def main() -> int:
    """Print one Markdown table row per module."""
    print("| module | mutants | checked | killed | survived | no tests | score |")
    print("|---|---|---|---|---|---|---|")
    for meta in sorted(MUTANTS.glob("*.py.meta")):
        counts = tally(meta)
        total = sum(counts.values())
        killed = counts["killed"] + counts["timeout"]
        checked = total - counts["not checked"]
        scored = killed + counts["survived"]
        score = f"{100 * killed / scored:.0f} %" if scored else "-"
        print(f"| `{meta.name[:-5]}` | {total} | {checked} | {killed} | {counts['survived']} | {counts['no tests']} | {score} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

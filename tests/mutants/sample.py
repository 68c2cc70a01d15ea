"""Draw a random sample of the mutants mutmut has not checked yet, per module.

    .venv/bin/mutmut run --max-children 3 $(python3 tests/mutants/sample.py 32)   # 32 a module, seed 15

mutmut runs the mutants whose tests are quickest first, so an interrupted run
has checked the cheap end of every module and none of the dear one: the
functions every test reaches (registration, sessions, uploads). A seeded random
sample of what is left, run by name, gives those a fair share of the time, and
`scores.py` estimates each module's score from it (README.md here).
The draw is added to mutants/sample.txt, which `scores.py` reads: a second
draw from what the first left is part of one larger random sample.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

MUTANTS = Path(__file__).resolve().parents[2] / "mutants"


def unchecked(meta: Path) -> list[str]:
    """The names of one module's mutants without a result, sorted for a stable draw."""
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return sorted(name for name, code in codes.items() if code is None)


def main(per_module: int, seed: int = 15) -> int:
    """Print the draw's names (for mutmut), add them to mutants/sample.txt, and say how many each module gave."""
    rng = random.Random(seed)
    sample: list[str] = []
    for meta in sorted((MUTANTS / "secure_link").rglob("*.py.meta")):  # the package's modules, at any depth
        left = unchecked(meta)
        drawn = rng.sample(left, min(per_module, len(left)))
        sample += drawn
        print(f"{meta.relative_to(MUTANTS / 'secure_link').as_posix()[:-8]}: {len(drawn)} of {len(left)} unchecked",
              file=sys.stderr)
    with (MUTANTS / "sample.txt").open("a") as drawn_so_far:
        drawn_so_far.write("".join(name + "\n" for name in sample))
    print("\n".join(sample))
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(arg) for arg in sys.argv[1:])))

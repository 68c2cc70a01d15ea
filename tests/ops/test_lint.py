"""`make lint` checks the code against the oldest Python the package says it runs on.

setup.cfg's `python_requires` is a promise to whoever installs the package; mypy
and ruff hold the code to it only if they check that very version. Then a
feature of a newer Python (`asyncio.timeout` is 3.11's) fails `make test`
instead of a server on the older Python at its first socket.
"""

from __future__ import annotations

import configparser

from secure_link.config import PROJECT_ROOT


def test_mypy_and_ruff_check_the_python_the_package_requires() -> None:
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / "setup.cfg")
    oldest = config["options"]["python_requires"].removeprefix(">=")
    assert config["mypy"]["python_version"] == oldest
    assert f"--target-version py{oldest.replace('.', '')} " in (PROJECT_ROOT / "Makefile").read_text()

"""The README's test command on a machine that lacks something: it says what, and how to get it.

A green run must never hide what it did not test: the skipped tests are counted at the
end, by reason, each reason naming what to install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from secure_link.config import PROJECT_ROOT


def test_a_run_that_skipped_tests_ends_by_counting_them_with_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "test_lacking.py").write_text(
        "import pytest\n\n"
        "def test_in_a_browser():\n    pytest.skip('/usr/bin/chromium is missing: sudo apt-get install chromium')\n\n"
        "def test_through_nginx():\n    pytest.skip('/usr/bin/chromium is missing: sudo apt-get install chromium')\n\n"
        "def test_that_runs():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", "/dev/null", "-o", "asyncio_mode=auto",
                           "-o", "asyncio_default_fixture_loop_scope=session", str(tmp_path / "test_lacking.py")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 test(s) SKIPPED: this run did not test everything" in done.stdout
    assert "2 × /usr/bin/chromium is missing: sudo apt-get install chromium" in done.stdout


def test_make_test_names_the_packages_it_cannot_install_itself() -> None:
    """Not root or no apt-get (here: an apt-get that is not there): the command to run, and on."""
    done = subprocess.run(["make", "--no-print-directory", "system-tools", "SYSTEM_PACKAGES=demo-tool:/nonexistent/demo",
                           "APT_GET=/nonexistent/apt-get"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("Missing demo-tool: their tests will be skipped. "
                                   "Install them with: sudo apt-get install demo-tool")

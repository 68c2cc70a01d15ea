"""The web client's API types are generated from the OpenAPI document, never edited by hand.

`make api-types` regenerates web/src/lib/api-types.ts; this test does the same
into a temporary file and fails when the checked-in file differs, i.e. when
secure_link/openapi.py changed without the client's types following it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from secure_link.http import openapi
from secure_link.config import PROJECT_ROOT

WEB = PROJECT_ROOT / "web"
GENERATOR = WEB / "node_modules" / ".bin" / "openapi-typescript"


def test_checked_in_api_types_match_the_openapi_document(tmp_path: Path) -> None:
    if not GENERATOR.exists():
        if os.environ.get("CI"):
            pytest.fail("web/node_modules is missing: make test runs npm ci")
        pytest.skip("openapi-typescript is not installed: install Node.js 20+ with npm, then `make web`")
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi.document(), indent=2, sort_keys=True))
    generated = tmp_path / "api-types.ts"
    subprocess.run([str(GENERATOR), str(document), "-o", str(generated)], cwd=WEB, check=True,
                   capture_output=True, timeout=60)
    checked_in = (WEB / "src" / "lib" / "api-types.ts").read_text()
    assert generated.read_text() == checked_in, "web/src/lib/api-types.ts is stale: run `make api-types`"

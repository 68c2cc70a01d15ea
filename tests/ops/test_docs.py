"""The docs keep up with the code: every route is documented, the README has its two commands."""

from __future__ import annotations

from secure_link import routes
from secure_link.config import PROJECT_ROOT


def test_every_route_is_in_the_api_docs() -> None:
    api = (PROJECT_ROOT / "docs" / "api.md").read_text()
    for route in routes.routes:
        path = route.path.replace("{session_id:id64}", "{id}").replace("{message_id:id64}", "{id}")
        assert f"`{path}" in api or f" {path}" in api, f"{route.path} is not in docs/api.md"


def test_every_error_code_raised_is_documented() -> None:
    import re

    api = (PROJECT_ROOT / "docs" / "api.md").read_text()
    source = "\n".join(p.read_text() for p in (PROJECT_ROOT / "secure_link").rglob("*.py"))
    codes = set(re.findall(r'AppError\(\s*\d{3},\s*"([a-z_]+)"', source))
    assert codes, "no error codes found: the pattern is stale"
    missing = sorted(code for code in codes if f"`{code}`" not in api)
    assert not missing, f"undocumented error codes: {missing}"


def test_readme_leads_with_the_two_commands() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_every_setting_is_in_the_readme() -> None:
    from secure_link.config import _VARIABLES

    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = sorted(name for name in _VARIABLES if f"`{name}`" not in readme)
    assert not missing, f"settings missing from the README's table: {missing}"

"""The server's pyinstrument session (`python -m bench --profile S`), summed into where the CPU went."""

from __future__ import annotations

from pathlib import Path


def render_profile(session_path: Path, results: Path, top: int = 25) -> None:
    """Where the server's samples went: the call tree, inclusive time per function, self time per package."""
    from pyinstrument.renderers import ConsoleRenderer, JSONRenderer
    from pyinstrument.session import Session

    session = Session.load(session_path)
    results.mkdir(parents=True, exist_ok=True)
    (results / "profile.json").write_text(JSONRenderer().render(session))
    tree = session_path.with_name("tree.txt")
    tree.write_text(ConsoleRenderer(time="percent_of_total").render(session))
    inclusive, by_package = _aggregate(session.frame_records)
    total = sum(t for _, t in session.frame_records)
    print(f"profile: {session.duration:.1f} s wall, {session.cpu_time:.1f} s CPU; inclusive share of samples:")
    for name, spent in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * spent / total:5.1f}%  {name}")
    print("self time by package (the frame on top of the stack):")
    for name, spent in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {100 * spent / total:5.1f}%  {name}")
    print(f"\ncall tree: {tree}; pyinstrument JSON: {results / 'profile.json'}")


def _aggregate(records: list[tuple[list[str], float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Inclusive time of the project's and asyncpg's functions; self time by package."""
    inclusive: dict[str, float] = {}
    by_package: dict[str, float] = {}
    for stack, spent in records:
        seen = set()
        for frame in stack:
            function, path = frame.split("\x00")[:2]
            if ("/secure_link/" in path or "/asyncpg/" in path) and function not in seen:
                seen.add(function)
                key = f"{Path(path).parent.name}/{Path(path).name}:{function}"
                inclusive[key] = inclusive.get(key, 0.0) + spent
        leaf = stack[-1].split("\x00")[1]
        package = leaf.split("site-packages/")[1].split("/")[0] if "site-packages/" in leaf else (
            "secure_link" if "/secure_link/" in leaf else Path(leaf).parent.name or leaf)
        by_package[package] = by_package.get(package, 0.0) + spent
    return inclusive, by_package

"""The operator's commands (contract v1.2): `secure-link invites …` and `secure-link users …`.

Each works against DATABASE_URL or the embedded database, prints a table a person
can read (or `--json`), and exits non-zero with one clear line on bad input.
Suspending and deleting reach running servers as a user's own action would: the
command opens the same services a worker does (cli.py hands over the way to open
them, app's), so sockets close (4401) on every worker and peers hear `cleared` at once.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import click

from secure_link import chat
from secure_link.accounts import find_account, invites, suspend
from secure_link.config import ConfigError, Settings
from secure_link.db import Database
from secure_link.encryption import master_key_path, secretfile
from secure_link.errors import AppError
from secure_link.services import Services
from secure_link.wire import JsonObject, rfc3339

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> int:
    """Seconds from `90`, `90s`, `15m`, `12h`, `7d` or `2w`."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 90m, 12h, 7d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [headers, *rows])


def resolved(read_settings: Callable[[], Settings], database_url: Callable[[Settings], str]) -> tuple[Settings, str]:
    """The command's settings with the database, the pepper and the master key file each pinned
    down (on the embedded database: its URL, and the files under var/), and the pepper."""
    settings = read_settings()
    try:
        pepper = secretfile.pepper(settings)
        key_file = master_key_path(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings.replace(database_url=database_url(settings), pepper=pepper, master_key_file=key_file), pepper


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's work; a refusal of the app's becomes one line and a non-zero exit."""
    try:
        return asyncio.run(work)
    except AppError as error:
        raise click.ClickException(error.message) from None
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def link_origin(settings: Settings) -> str:
    """Where an invite link points: PUBLIC_URL, else the address `serve` listens on."""
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def echo(rows: list[JsonObject], headers: list[str], keys: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(table(headers, [[_cell(row[key]) for key in keys] for row in rows]))
    else:
        click.echo("(none)")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    return str(value)


def invite_row(key: bytes, row: asyncpg.Record, origin: str) -> JsonObject:
    shown = invites.invite_json(key, row, origin)
    return {**shown, "created_by": row["created_by"]}


def user_row(row: asyncpg.Record) -> JsonObject:
    return {"username": row["username"], "created_at": rfc3339(row["created_at"]),
            "last_seen": rfc3339(row["last_seen"]) if row["last_seen"] else None,
            "live_sessions": row["live_sessions"], "bytes_stored": int(row["bytes_stored"]),
            "suspended": row["suspended_at"] is not None}


WithServices = Callable[[Settings, Callable[[Services], Awaitable[T]]], Coroutine[Any, Any, T]]


def commands(read_settings: Callable[[], Settings], database_url: Callable[[Settings], str],
             with_services: WithServices[Any]) -> list[click.Group]:
    """The `invites` and `users` groups: `read_settings` reads the environment (with the pepper),
    `database_url` picks the database (the embedded one when DATABASE_URL is unset), and
    `with_services` runs work with what a worker holds (the app's services, opened and closed)."""

    @click.group("invites")
    def invites_group() -> None:
        """Invitations to register (REGISTRATION=invite)."""

    @invites_group.command("create")
    @click.option("--uses", type=click.IntRange(invites.DEFAULT_USES, invites.MAX_USES), default=1,
                  help="How many people it lets in [1..100, default 1].")
    @click.option("--expires", "expires", default="7d", help="When it expires: 60s to 30d [default 7d].")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a line for people.")
    def invites_create(uses: int, expires: str, as_json: bool) -> None:
        """Make an invite; prints its code and the link that opens registration with it."""
        seconds = duration(expires)
        if not invites.MIN_EXPIRES_S <= seconds <= invites.MAX_EXPIRES_S:
            raise click.BadParameter("must be from 60s to 30d", param_hint="--expires")
        settings, pepper = resolved(read_settings, database_url)
        key = invites.tag_key(pepper)
        row = run(Database.run(settings.database_url or "", lambda db: invites.create(db, None, uses, seconds, 0)))
        shown = invites.invite_json(key, row, link_origin(settings))
        if as_json:
            click.echo(json.dumps(shown, indent=2))
            return
        click.echo(f"code:    {shown['code']}\nlink:    {shown['url']}\nuses:    {shown['uses_left']}\n"
                   f"expires: {_cell(row['expires_at'])} UTC")

    @invites_group.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    def invites_list(as_json: bool) -> None:
        """Every live invite, the operator's and the users'."""
        settings, pepper = resolved(read_settings, database_url)
        key, origin = invites.tag_key(pepper), link_origin(settings)
        rows = run(Database.run(settings.database_url or "", lambda db: db.fetch("list_operator_invites")))
        shown = [invite_row(key, row, origin) for row in rows]
        echo(shown, ["CODE", "USES LEFT", "EXPIRES", "CREATED", "BY"],
             ["code", "uses_left", "expires_at", "created_at", "created_by"], as_json)

    @invites_group.command("revoke")
    @click.argument("code")
    def invites_revoke(code: str) -> None:
        """Revoke a live invite, whoever made it."""
        settings, pepper = resolved(read_settings, database_url)
        nonce = invites.nonce_of(invites.tag_key(pepper), code)
        row = run(Database.run(settings.database_url or "", lambda db: db.fetchrow("revoke_any_invite", nonce))) \
            if nonce else None
        if row is None:
            raise click.ClickException(f"no live invite has the code {code!r}")
        click.echo(f"revoked {code}")

    @click.group("users")
    def users_group() -> None:
        """Accounts: list, suspend, unsuspend, delete."""

    @users_group.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    def users_list(as_json: bool) -> None:
        """Every account: created, last seen, live sessions, bytes stored, suspended."""
        settings, _ = resolved(read_settings, database_url)
        rows = run(Database.run(settings.database_url or "", lambda db: db.fetch("list_users_for_operator")))
        echo([user_row(row) for row in rows], ["USERNAME", "CREATED", "LAST SEEN", "SESSIONS", "BYTES", "SUSPENDED"],
             ["username", "created_at", "last_seen", "live_sessions", "bytes_stored", "suspended"], as_json)

    @users_group.command("suspend")
    @click.argument("username")
    def users_suspend(username: str) -> None:
        """End every session of the account (its sockets close) and refuse its logins until lifted."""
        settings, _ = resolved(read_settings, database_url)
        run(with_services(settings, lambda services: suspend(services.db, services.fanout, username, True)))
        click.echo(f"suspended {username}: its sessions ended, its logins are refused until `users unsuspend`")

    @users_group.command("unsuspend")
    @click.argument("username")
    def users_unsuspend(username: str) -> None:
        """Let a suspended account log in again."""
        settings, _ = resolved(read_settings, database_url)
        run(with_services(settings, lambda services: suspend(services.db, services.fanout, username, False)))
        click.echo(f"unsuspended {username}")

    @users_group.command("delete")
    @click.argument("username")
    @click.option("--yes", is_flag=True, help="Do not ask first.")
    def users_delete(username: str, yes: bool) -> None:
        """Delete the account as its owner's delete-account would: everything, and the name retired."""
        if not yes:
            click.confirm(f"Delete {username} for good, with every conversation it is in (for both sides)?",
                          abort=True)
        settings, _ = resolved(read_settings, database_url)

        async def erase(services: Services) -> dict[str, int]:
            return await chat.erase_account(services, await find_account(services.db, username))

        deleted = run(with_services(settings, erase))
        click.echo(f"deleted {username}: {deleted['messages']} messages and {deleted['files']} files erased; "
                   "the name is retired")

    return [invites_group, users_group]

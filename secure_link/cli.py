"""The `secure-link` command: serve, and look after the database.

Options default to the environment as read by `Settings.from_env()` (the
SECURE_LINK_* variables in the README); a flag given here wins.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
from pathlib import Path
from typing import TypeVar
from collections.abc import Awaitable, Callable

import click
import uvicorn
from starlette.types import ASGIApp

from secure_link import operator
from secure_link.config import ConfigError, Settings
from secure_link.db import Database
from secure_link.encryption import DecryptionError, master_key_path, open_keyring, rotation, secretfile
from secure_link.files import collect_garbage
from secure_link.http import openapi
from secure_link.ops import audit, devdb, log_config
from secure_link.schema import apply_schema
from secure_link.services import Services

T = TypeVar("T")


@click.group()
@click.version_option(package_name="secure-link")
def main() -> None:
    """Secure Link: private, ephemeral 1:1 chat."""


@main.command()
@click.option("--host", default=None, help="Address to bind [SECURE_LINK_HOST, default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to bind [SECURE_LINK_PORT, default 8000].")
@click.option("--workers", type=int, default=None, help="Worker processes [SECURE_LINK_WORKERS, default 1].")
@click.option("--reload", is_flag=True, help="Restart on code changes (development only).")
def serve(host: str | None, port: int | None, workers: int | None, reload: bool) -> None:
    """Serve HTTP and WebSocket; with DATABASE_URL unset, on an embedded PostgreSQL."""
    settings = _serving_settings()
    url = devdb.database_url(settings, stop_at_exit=True)
    asyncio.run(apply_schema(url))
    settings = settings.replace(master_key_file=_checked_master_key(url, settings))
    # Worker processes build their app from the environment (uvicorn --factory),
    # so they must find the database (and the embedded one's pepper and master key) this process chose.
    os.environ["DATABASE_URL"] = url
    os.environ["MASTER_KEY_FILE"] = str(settings.master_key_file)
    if settings.pepper_file:
        os.environ["SECRET_PEPPER_FILE"] = str(settings.pepper_file)
    workers = workers or settings.workers
    several = workers > 1 or reload
    if several:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_metrics_dir(settings))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        "secure_link.app:create_app" if several else _single_app(settings.replace(database_url=url)),
        factory=several,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers if several else None,
        reload=reload,
        proxy_headers=False,  # app resolves X-Forwarded-* from TRUSTED_PROXIES only (http/proxy.py)
        ws_max_size=settings.ws_max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_per_message_deflate=False,
        log_config=log_config(settings.log_level, settings.log_format),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _env_settings() -> Settings:
    """The environment's settings; a refused one is a one-line error, not a traceback."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _checked_master_key(url: str, settings: Settings) -> Path:
    """MASTER_KEY_FILE, created on first start, checked against the database: a one-line refusal if wrong."""
    try:
        path = master_key_path(settings)
        asyncio.run(Database.run(url, lambda db: open_keyring(db, path)))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return path


def _serving_settings() -> Settings:
    """Settings to serve with: the pepper checked (or, on the embedded database, created) first."""
    settings = _env_settings()
    try:
        if settings.database_url is None and not (settings.pepper or settings.pepper_file):
            settings = settings.replace(pepper_file=secretfile.local_pepper_file(settings))
        secretfile.pepper(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _fresh_metrics_dir(settings: Settings) -> Path:
    """Where the workers keep their metrics (multiprocess mode): PROMETHEUS_MULTIPROC_DIR as
    given, else an empty folder of this server process under var/, removed at exit."""
    if settings.metrics_dir:
        settings.metrics_dir.mkdir(parents=True, exist_ok=True)
        return settings.metrics_dir
    folder = settings.var_dir / f"metrics-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown. Exiting through
    SystemExit instead of the default handler lets atexit stop the embedded
    PostgreSQL, which would otherwise be left running."""
    raise SystemExit(128 + signum)


def _single_app(settings: Settings) -> ASGIApp:
    """The app for one worker, built here: the only import of app.py, as `serve` needs it."""
    from secure_link.app import create_app

    return create_app(settings)


@main.command("openapi")
def openapi_command() -> None:
    """Print the OpenAPI document, so the web client's types are generated without a server."""
    click.echo(json.dumps(openapi.document(), indent=2, sort_keys=True))


@main.group()
def db() -> None:
    """Database chores."""


@db.command("init")
def db_init() -> None:
    """Create the schema and apply pending migrations (serve does this too)."""
    url = devdb.database_url(_env_settings(), stop_at_exit=True)
    applied = asyncio.run(apply_schema(url))
    click.echo(f"schema ready; migrations applied now: {applied or 'none'}")


@db.command("url")
def db_url() -> None:
    """Print the database URL, starting the embedded server if needed (it keeps running)."""
    click.echo(devdb.database_url(_env_settings(), stop_at_exit=False))


@main.group("media")
def media_group() -> None:
    """Uploaded files."""


@media_group.command("gc")
def media_gc() -> None:
    """Delete unsent uploads older than UPLOAD_GC_AGE and files on disk no row names (all of MEDIA_ROOT)."""
    settings = _env_settings()
    url = devdb.database_url(settings, stop_at_exit=True)
    removed = asyncio.run(Database.run(url, lambda db: collect_garbage(db, settings, whole_disk=True)))
    click.echo(f"removed {removed['uploads']} stale uploads and {removed['orphans']} orphaned files")


@main.command("audit")
def audit_command() -> None:
    """Check for leftovers: expired messages still stored, files without rows and rows without
    files, keys of conversations that are gone. Exits 1, listing them, if there are any."""
    settings = _env_settings()
    url = devdb.database_url(settings, stop_at_exit=True)
    findings = asyncio.run(Database.run(url, lambda db: audit(db, settings)))
    for finding in findings:
        click.echo(f"{finding.what}: {len(finding.items)}")
        for item in finding.items[:20]:
            click.echo(f"  {item}")
        if len(finding.items) > 20:
            click.echo(f"  ... and {len(finding.items) - 20} more")
    if findings:
        raise SystemExit(1)
    click.echo("nothing left behind: no expired message, stray file or orphaned key")


@main.group("keys")
def keys_group() -> None:
    """The master key of encryption at rest (MASTER_KEY_FILE)."""


@keys_group.command("rotate")
@click.option("--prepare", is_flag=True,
              help="Only create and register the new key (MASTER_KEY_FILE.next), to copy it to other hosts first.")
def keys_rotate(prepare: bool) -> None:
    """Move to a new master key: rewrap every data key, then retire the old one. Safe to rerun after a crash."""
    settings = _env_settings()
    url = devdb.database_url(settings, stop_at_exit=True)
    try:
        path = master_key_path(settings)
        if prepare:
            keyring = asyncio.run(Database.run(url, lambda db: rotation.prepare(db, path)))
            click.echo(f"master key {keyring.wrap_id} is in {path}.next: copy it to every host, then run "
                       "`secure-link keys rotate`")
            return
        done = asyncio.run(Database.run(url, lambda db: rotation.rotate(db, path)))
    except (ConfigError, DecryptionError, rotation.RotationRunning) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"master key {done.master_key_id} now wraps every key ({done.rewrapped} rewrapped); "
               f"retired: {', '.join(done.retired) or 'none'}")


async def _with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with what a worker holds (pool, fan-out, master key), opened and closed here, for
    the operator's commands that must reach running servers (app.py's, as `serve` builds it)."""
    from secure_link.app import close_services, open_services

    services = await open_services(settings)
    try:
        return await work(services)
    finally:
        await close_services(services)


for _group in operator.commands(_serving_settings, lambda settings: devdb.database_url(settings, stop_at_exit=True),
                                _with_services):
    main.add_command(_group)

"""The `secure-link` command: serve, and look after the database.

Options default to the environment as read by `Settings.from_env()` (the
SECURE_LINK_* variables in the README); a flag given here wins.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import click
import uvicorn

from . import devdb, media, openapi
from .config import Settings
from .db import Database, apply_schema
from .logs import log_config


def _database_url(settings: Settings, stop_at_exit: bool) -> str:
    """DATABASE_URL, or the embedded server's database, created on first use."""
    if settings.database_url:
        return settings.database_url
    server_url = devdb.start_server(settings.var_dir, stop_at_exit=stop_at_exit)
    asyncio.run(devdb.create_database(server_url, devdb.DATABASE_NAME))
    return devdb.with_database(server_url, devdb.DATABASE_NAME)


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
    settings = Settings.from_env()
    url = _database_url(settings, stop_at_exit=True)
    asyncio.run(apply_schema(url))
    # Worker processes build their app from the environment (uvicorn --factory),
    # so they must find the database this process chose.
    os.environ["DATABASE_URL"] = url
    workers = workers or settings.workers
    several = workers > 1 or reload
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    uvicorn.run(
        "secure_link.app:create_app" if several else _single_app(settings.replace(database_url=url)),
        factory=several,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers if several else None,
        reload=reload,
        proxy_headers=False,  # app resolves X-Forwarded-* from TRUSTED_PROXIES only (proxy.py)
        ws_max_size=settings.ws_max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval,
        ws_per_message_deflate=False,
        log_config=log_config(settings.log_level),
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown. Exiting through
    SystemExit instead of the default handler lets atexit stop the embedded
    PostgreSQL, which would otherwise be left running."""
    raise SystemExit(128 + signum)


def _single_app(settings: Settings):  # type: ignore[no-untyped-def]
    from .app import create_app

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
    url = _database_url(Settings.from_env(), stop_at_exit=True)
    applied = asyncio.run(apply_schema(url))
    click.echo(f"schema ready; migrations applied now: {applied or 'none'}")


@db.command("url")
def db_url() -> None:
    """Print the database URL, starting the embedded server if needed (it keeps running)."""
    click.echo(_database_url(Settings.from_env(), stop_at_exit=False))


@main.group("media")
def media_group() -> None:
    """Uploaded files."""


@media_group.command("gc")
def media_gc() -> None:
    """Delete unsent uploads older than UPLOAD_GC_AGE and files on disk no row names (all of MEDIA_ROOT)."""
    settings = Settings.from_env()
    url = _database_url(settings, stop_at_exit=True)
    removed = asyncio.run(_collect_media_garbage(url, settings))
    click.echo(f"removed {removed['uploads']} stale uploads and {removed['orphans']} orphaned files")


async def _collect_media_garbage(url: str, settings: Settings) -> dict[str, int]:
    db = await Database.connect(url, min_size=1, max_size=2)
    try:
        return await media.collect_garbage(db, settings, whole_disk=True)
    finally:
        await db.close()

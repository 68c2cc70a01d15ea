"""Settings, read once from the environment (and an optional `.env` file).

This is the only module that reads `os.environ`; everything else receives a
frozen `Settings`, so tests build one directly and nothing changes under them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
REGISTRATION_MODES = ("open", "invite", "closed")
_ORIGIN = re.compile(r"^https?://[a-z0-9.\-\[\]:]+$")


class ConfigError(ValueError):
    """A setting the server refuses to run with; the message says what to set instead."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every tunable of the server, with the defaults documented in the README."""

    database_url: str | None = None
    broadcast_url: str | None = None
    media_root: Path = PROJECT_ROOT / "media"
    var_dir: Path = PROJECT_ROOT / "var"
    web_root: Path = Path(__file__).resolve().parent / "web_dist"  # the built client; in the wheel too
    cors_origins: tuple[str, ...] = ()
    public_url: str | None = None
    trusted_proxies: tuple[IpNetwork, ...] = ()
    bcrypt_rounds: int = 12
    bcrypt_concurrency: int = 2
    bcrypt_queue: int = 16
    pepper: str | None = None
    pepper_file: Path | None = None
    master_key_file: Path | None = None
    session_ttl: int = 30 * 24 * 3600
    session_cache_size: int = 10_000  # sessions a worker trusts a few seconds without a query; 0: none
    max_upload_bytes: int = 25 * 1024 * 1024
    max_json_bytes: int = 64 * 1024
    max_image_pixels: int = 40_000_000
    image_concurrency: int = 2
    allowed_upload_types: tuple[str, ...] = (
        "image/png", "image/jpeg", "image/gif", "image/webp",
        "application/pdf", "text/plain", "application/zip",
    )
    upload_gc_age: int = 24 * 3600
    upload_quota_bytes: int = 100 * 1024 * 1024
    upload_rate_per_min: int = 30
    housekeeping_interval: float = 10.0
    expiry_sweep_interval: float = 0.5  # expired messages are deleted within this (plus the sweep's time)
    key_step_interval: float = 60.0  # an erasure is final for the master key's holder within this (encryption/epochs.py)
    chat_rate_per_s: float = 20.0
    login_failures_per_15_min: int = 10
    register_rate_per_min: int = 20
    registration: str = "open"  # open, invite or closed (contract v1.2)
    invites_per_user: int = 5  # live invites a user may hold; 0: only the operator invites
    ws_max_frame_bytes: int = 64 * 1024
    ws_ping_interval: float = 20.0
    ws_auth_timeout: float = 10.0
    ws_send_queue: int = 256
    ws_send_timeout: float = 10.0
    ws_max_sockets_per_user: int = 20
    max_message_chars: int = 4000
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    log_format: str = "auto"
    metrics_dir: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `.env` (if present) overlaid by the real environment."""
        if environ is None:
            dotenv = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None}
            environ = {**dotenv, **os.environ}
        return cls(**_parse(environ))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the CLI use this)."""
        return dataclasses.replace(self, **changes)


def _origin(value: str) -> str:
    """Origins compare as browsers send them: lower case, no trailing slash."""
    return value.strip().rstrip("/").lower()


def _origins(value: str) -> tuple[str, ...]:
    """Explicit origins only: with credentials allowed, `*` would let every site act as the user."""
    origins = tuple(_origin(part) for part in _csv(value))
    for origin in origins:
        if not _ORIGIN.match(origin):
            raise ConfigError(f"CORS_ORIGINS: {origin!r} is not an origin like https://app.example "
                              "(a wildcard is refused: cookies authenticate these requests)")
    return origins


def _registration(value: str) -> str:
    if value not in REGISTRATION_MODES:
        raise ConfigError(f"REGISTRATION must be open, invite or closed, not {value!r}")
    return value


def _log_format(value: str) -> str:
    if value not in ("auto", "json", "text"):
        raise ConfigError(f"LOG_FORMAT must be auto, json or text, not {value!r}")
    return value


def _no_accel(value: str) -> None:
    """nginx would send the files as stored, which is ciphertext: the app streams them instead."""
    raise ConfigError("MEDIA_ACCEL_PREFIX is no longer supported: media are encrypted at rest and the app "
                      "decrypts them as it streams them, so nginx cannot send the files itself. Unset it "
                      "(and drop the internal media location from the nginx site); see docs/media.md")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _networks(value: str) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _csv(value))


# Each variable and the field it sets (README.md lists them with their defaults).
_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "DATABASE_URL": ("database_url", str),
    "BROADCAST_URL": ("broadcast_url", str),
    "MEDIA_ROOT": ("media_root", Path),
    "SECURE_LINK_VAR_DIR": ("var_dir", Path),
    "SECURE_LINK_WEB_ROOT": ("web_root", Path),
    "CORS_ORIGINS": ("cors_origins", _origins),
    "PUBLIC_URL": ("public_url", _origin),
    "TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "BCRYPT_ROUNDS": ("bcrypt_rounds", int),
    "BCRYPT_CONCURRENCY": ("bcrypt_concurrency", int),
    "BCRYPT_QUEUE": ("bcrypt_queue", int),
    "SECRET_PEPPER": ("pepper", str),
    "SECRET_PEPPER_FILE": ("pepper_file", Path),
    "MASTER_KEY_FILE": ("master_key_file", Path),
    "SESSION_TTL": ("session_ttl", int),
    "SESSION_CACHE_SIZE": ("session_cache_size", int),
    "MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "MAX_JSON_BYTES": ("max_json_bytes", int),
    "MAX_IMAGE_PIXELS": ("max_image_pixels", int),
    "IMAGE_CONCURRENCY": ("image_concurrency", int),
    "ALLOWED_UPLOAD_TYPES": ("allowed_upload_types", _csv),
    "UPLOAD_GC_AGE": ("upload_gc_age", int),
    "UPLOAD_QUOTA_BYTES": ("upload_quota_bytes", int),
    "UPLOAD_RATE_PER_MIN": ("upload_rate_per_min", int),
    "HOUSEKEEPING_INTERVAL": ("housekeeping_interval", float),
    "EXPIRY_SWEEP_INTERVAL": ("expiry_sweep_interval", float),
    "KEY_STEP_INTERVAL": ("key_step_interval", float),
    "MEDIA_ACCEL_PREFIX": ("media_accel_prefix", _no_accel),
    "CHAT_RATE_PER_S": ("chat_rate_per_s", float),
    "LOGIN_FAILURES_PER_15_MIN": ("login_failures_per_15_min", int),
    "REGISTER_RATE_PER_MIN": ("register_rate_per_min", int),
    "REGISTRATION": ("registration", _registration),
    "INVITES_PER_USER": ("invites_per_user", int),
    "WS_MAX_FRAME_BYTES": ("ws_max_frame_bytes", int),
    "WS_PING_INTERVAL": ("ws_ping_interval", float),
    "WS_SEND_TIMEOUT": ("ws_send_timeout", float),
    "WS_MAX_SOCKETS_PER_USER": ("ws_max_sockets_per_user", int),
    "SECURE_LINK_HOST": ("host", str),
    "SECURE_LINK_PORT": ("port", int),
    "SECURE_LINK_WORKERS": ("workers", int),
    "SECURE_LINK_LOG_LEVEL": ("log_level", str),
    "LOG_FORMAT": ("log_format", _log_format),
    "PROMETHEUS_MULTIPROC_DIR": ("metrics_dir", Path),
}


def _parse(env: Mapping[str, str]) -> dict[str, Any]:
    """Map environment variables onto fields; unset or empty means the default."""
    fields: dict[str, object] = {}
    for variable, (field, convert) in _VARIABLES.items():
        value = (env.get(variable) or "").strip()
        if value:
            fields[field] = convert(value)
    return fields

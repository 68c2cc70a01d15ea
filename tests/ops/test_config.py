"""Settings come from the environment once, normalised where browsers compare them."""

from __future__ import annotations

import ipaddress

from secure_link.config import Settings


def test_defaults_need_nothing_set() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None and settings.port == 8000 and settings.bcrypt_rounds == 12


def test_origins_are_normalised_as_browsers_send_them() -> None:
    settings = Settings.from_env({"PUBLIC_URL": "https://Chat.Example/", "CORS_ORIGINS": "https://App.Example/ , http://x.test"})
    assert settings.public_url == "https://chat.example"
    assert settings.cors_origins == ("https://app.example", "http://x.test")


def test_lists_numbers_and_networks_are_parsed() -> None:
    settings = Settings.from_env({"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8", "CHAT_RATE_PER_S": "0",
                                  "MAX_UPLOAD_BYTES": "1024", "ALLOWED_UPLOAD_TYPES": "image/png"})
    assert settings.trusted_proxies == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    assert settings.chat_rate_per_s == 0 and settings.max_upload_bytes == 1024
    assert settings.allowed_upload_types == ("image/png",)

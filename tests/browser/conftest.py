"""The browser stories' fixtures: one Chromium a module, and no Content-Security-Policy violation."""

from .browser_kit import browser, no_policy_violations

__all__ = ["browser", "no_policy_violations"]

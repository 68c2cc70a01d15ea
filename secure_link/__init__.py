"""Secure Link: a self-hosted backend for private, ephemeral 1:1 chat."""

__version__ = "0.1.0"

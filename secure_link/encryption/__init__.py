"""Encryption at rest: the master key, data keys, sealed bodies and files."""

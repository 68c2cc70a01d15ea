"""Accounts: who people are, how they prove it, who is online."""

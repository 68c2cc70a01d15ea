"""`python -m secure_link` is the `secure-link` command."""

from .cli import main

main()

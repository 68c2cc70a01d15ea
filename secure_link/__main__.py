"""`python -m secure_link` is the `secure-link` command."""

from secure_link.cli import main

main()

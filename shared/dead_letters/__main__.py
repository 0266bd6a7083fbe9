"""`python -m shared.dead_letters list|replay`."""

from shared.dead_letters.cli import main

main()

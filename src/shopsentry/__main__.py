"""`python -m shopsentry` runs the CLI (used by the demo and the workers' supervisor)."""

from shopsentry.cli import main

main()

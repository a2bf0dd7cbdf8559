"""``python -m plait`` runs the CLI."""

from plait.cli import main

main()

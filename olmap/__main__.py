"""``python -m olmap`` runs the command line."""

from olmap.cli.main import main

main()

"""``python -m evalsink`` runs the command line."""

from evalsink.cli import main

main()

"""``python -m cli`` runs the ``walknoise`` command (handy without the console script)."""

from cli.main import main

main()

"""``python -m walknoise.cli`` runs the ``walknoise`` command (handy without the console script)."""

from .main import main

main()

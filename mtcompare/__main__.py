"""``python -m mtcompare`` runs the command line."""

from mtcompare.cli import main

main()

"""``python -m tmemref``: the ``tmemref`` command of :mod:`tmemref.cli` (serve, replay, xl, explore)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

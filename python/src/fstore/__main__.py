"""``python -m fstore apply FILE [--url URL] [--dry-run]``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

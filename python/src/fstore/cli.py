"""The ``fstore-py`` command (also ``python -m fstore``).

    fstore-py apply FILE [--url URL] [--api-key KEY] [--dry-run]

Named ``fstore-py`` so as not to clash with the server's ``fstore`` binary.
Exit codes: 0 applied (or planned), 1 the file, the plan or the server
refused, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import __version__
from .apply import ApplyError, apply, load_definitions
from .client import FeatureStore
from .errors import FeatureStoreError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fstore-py", description="fstore Python SDK tools")
    p.add_argument("--version", action="version", version=f"fstore-py {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("apply", help="apply definitions-as-code (YAML or JSON) idempotently",
                       description="Creates the entities, feature sets and features of FILE "
                                   "that are missing, updates the fields that differ (only "
                                   "those the file gives), and leaves the rest.")
    a.add_argument("file", help="definitions file (.yaml/.yml needs PyYAML; .json does not)")
    a.add_argument("--url", default=os.environ.get("FSTORE_URL", "http://localhost:8002"),
                   help="server URL (default: $FSTORE_URL or http://localhost:8002)")
    a.add_argument("--api-key", default=os.environ.get("FSTORE_API_KEY"),
                   help="API key (default: $FSTORE_API_KEY)")
    a.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    a.add_argument("--dry-run", action="store_true",
                   help="print what would change (field: old -> new) and change nothing")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "apply":
        try:
            spec = load_definitions(args.file)
            with FeatureStore(args.url, api_key=args.api_key, timeout=args.timeout) as fs:
                plan = apply(fs, spec, dry_run=args.dry_run, out=sys.stdout)
        except (ApplyError, FeatureStoreError, OSError) as e:
            print(f"fstore-py apply: error: {e}", file=sys.stderr)
            return 1
        if args.dry_run:
            print("Dry run: nothing was changed.")
        elif plan.has_changes:
            print("Applied.")
        else:
            print("Nothing to do.")
        return 0
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

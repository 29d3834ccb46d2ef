"""``python -m pytest_ktinterf fetch``: get the embedded server's model and build llama-server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_ktinterf import assets
from pytest_ktinterf.errors import KtInterfError
from pytest_ktinterf.processes import reap_leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_ktinterf")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the model and build llama-server into the cache")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="default: $KTINTERF_CACHE or XDG cache")
    sub.add_parser("reap", help="kill processes left by a crashed pytest-ktinterf session")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            server, model = assets.fetch(args.cache_dir)
            print(f"llama-server: {server}\nmodel:        {model}")
        else:
            for line in reap_leftovers():
                print(f"reaped {line}")
    except KtInterfError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m igor_p2p.bench [--only AREA]... [--quick] [--out PATH] [--list]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from igor_p2p.bench.core import BenchError, discover
from igor_p2p.bench.runner import DEFAULT_RESULTS, RunOptions, run_bench
from igor_p2p.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m igor_p2p.bench", description=__doc__)
    parser.add_argument("--only", action="append", default=[], metavar="AREA")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, short windows")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--list", action="store_true", help="list the areas and exit")
    args = parser.parse_args(argv)
    # In-process nodes route py-libp2p's loggers into ours; keep the table readable.
    configure_logging("console", logging.ERROR)
    logging.getLogger("igor_p2p.libp2p").setLevel(logging.CRITICAL)
    if args.list:
        for name, area in sorted(discover().items()):
            print(f"{name}\t{area.description}")
        return 0
    try:
        run_bench(RunOptions(only=args.only, quick=args.quick, out=args.out))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

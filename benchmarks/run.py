"""One benchmark script: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

Each section lives in ``benchmarks/bench_<name>.py`` and exposes ``run(quick: bool) -> list[Row]``.
Every figure is printed beside its baseline measured in the same run, with their ratio: these
machines are noisy, so ratios hold where absolute times do not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from benchmarks.common import Row, format_table

SECTIONS = (
    "midi",
    "audio",
    "features",
    "db",
    "match",
    "batch",
    "peer",
    "collection",
    "windows",
    "pg",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    here = Path(__file__).resolve().parent
    for name in args.only or SECTIONS:
        if not (here / f"bench_{name}.py").exists():
            continue
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        section_rows = module.run(quick=args.quick)
        rows.extend(section_rows)
        print(f"[{name}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

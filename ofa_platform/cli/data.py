"""``ofa-platform data``: turn an ImageFolder tree into Parquet shards, and check shards.

``data convert imagefolder:DIR parquet:OUT`` writes the shards that training streams through
Ray Data (resumable: a rerun keeps finished shards); ``data check parquet:DIR`` reads every
shard and names each problem by shard and row, so a bad shard is found before a long job.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run_convert", "run_check"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="convert image trees to Parquet shards; check shards")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=type(p))
    c = dsub.add_parser("convert", help="ImageFolder tree -> Parquet shards (resumable)")
    c.add_argument("source", help="imagefolder:DIR (DIR/train/<class>/*, optional DIR/val/)")
    c.add_argument("dest", help="parquet:OUT (writes OUT/train/part-*.parquet, OUT/val/...)")
    c.add_argument("--shards", type=int, default=16, help="training shards (default 16)")
    c.add_argument("--resize", type=int, default=None, metavar="SHORT_SIDE",
                   help="re-encode with the shorter side at most SHORT_SIDE px (JPEG q90)")
    c.add_argument("--seed", type=int, default=0, help="shuffle of files into shards")
    c.add_argument("--json", action="store_true", help="print the summary as JSON")
    c.set_defaults(func=run_convert)
    k = dsub.add_parser("check", help="row counts, label range, undecodable images per shard")
    k.add_argument("dataset", help="parquet:DIR or parquet:s3://...")
    k.add_argument("--no-decode", action="store_true",
                   help="skip decoding the images (schema, rows and labels only)")
    k.add_argument("--json", action="store_true", help="print the report as JSON")
    k.set_defaults(func=run_check)


def _location(text: str, kind: str, flag: str) -> str:
    from ofa_platform.errors import UserError

    prefix, sep, rest = text.partition(":")
    if prefix != kind or not sep or not rest:
        raise UserError(f"{flag} {text!r}: expected {kind}:DIR")
    return rest


def run_convert(args: argparse.Namespace) -> int:
    from ofa_platform.data.shards import convert_imagefolder, stderr_progress
    from ofa_platform.errors import UserError

    src = _location(args.source, "imagefolder", "source")
    out = _location(args.dest, "parquet", "dest")
    if "://" in out:
        raise UserError(f"dest {args.dest!r}: convert writes local shards; copy them to "
                        "object storage afterwards (e.g. aws s3 sync)")
    summary = convert_imagefolder(src, out, shards=args.shards, resize=args.resize,
                                  seed=args.seed, progress=stderr_progress)
    if args.json:
        print(json.dumps({"out": out, **summary}, indent=2))
    else:
        for split, s in summary["splits"].items():
            print(f"{split}: {s['rows']} images in {s['shards']} shards "
                  f"({s['written']} written, {s['kept']} kept) under {out}/{split}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ofa_platform.data.shards import check, stderr_progress
    from ofa_platform.errors import UserError

    loc = _location(args.dataset, "parquet", "dataset")
    import sys

    # progress only on a terminal: a failed check then ends with exactly one line on stderr
    report = check(loc, decode=not args.no_decode,
                   progress=stderr_progress if sys.stderr.isatty() and not args.json else None)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{'split':<6} {'rows':>8} {'labels':>11} {'bad':>5}  shard")
        for s in report.shards:
            labels = f"{s['label_min']}..{s['label_max']}"
            print(f"{s['split']:<6} {s['rows']:>8} {labels:>11} {len(s['undecodable']):>5}  "
                  f"{s['shard']}")
        rows = sum(s["rows"] for s in report.shards)
        print(f"{len(report.shards)} shards, {rows} rows, {len(report.classes)} classes")
        for p in report.problems[:20]:
            print(f"problem: {p}")
    if report.problems:
        more = len(report.problems) - 1
        raise UserError(report.problems[0] + (f" (and {more} more problems)" if more else ""))
    return 0

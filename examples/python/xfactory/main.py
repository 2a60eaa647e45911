"""Asks the XFactory for an X, as an application would; prints what it got and why.

    python main.py get KIND SCALE [--refresh]   # the X, its residency before, the reason
    python main.py explain KIND SCALE           # what a get would do, building nothing
    python main.py threads KIND SCALE N         # N threads ask at once: one build
    python main.py status                       # what the store holds
    python main.py gc [--dry-run]               # remove what can never be served again
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from xfactory import XFactory, engine


def main() -> None:
    parser = argparse.ArgumentParser(description="the XFactory on trove")
    parser.add_argument("command", choices=["get", "explain", "threads", "status", "gc"])
    parser.add_argument("kind", nargs="?")
    parser.add_argument("scale", nargs="?", type=float)
    parser.add_argument("n", nargs="?", type=int, default=8)
    parser.add_argument("--refresh", action="store_true", help="build anew (the seed's use_cache=False)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    get_x = XFactory.get_x

    if args.command == "get":
        before = get_x.residency(args.kind, args.scale)
        if args.refresh:
            x, reason = get_x.refresh(args.kind, args.scale), "refreshed"
        else:
            x, reason = get_x.get_explained(args.kind, args.scale)
        print(f"scores {list(x.scores)}")
        print(f"residency before: {before}")
        print(f"reason: {reason}")
    elif args.command == "explain":
        print(get_x.explain(args.kind, args.scale))
    elif args.command == "threads":
        with ThreadPoolExecutor(args.n) as pool:
            xs = list(pool.map(lambda _: get_x(args.kind, args.scale), range(args.n)))
        print(f"{args.n} threads, {len({id(x) for x in xs})} object(s)")
    elif args.command == "status":
        for entry in engine.status():
            print(f"{entry['recipe']} {entry['args']}: {entry['residency']}")
    else:
        report = engine.gc(dry_run=args.dry_run)
        for removal in report["removals"]:
            print(f"removed {removal['what']}: {removal['reason']}")
        print(f"kept {report['kept']}")


if __name__ == "__main__":
    main()

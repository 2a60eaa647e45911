"""Cost of code tracking: a call-heavy build, tracked by each mechanism this interpreter
offers, against the same code run untracked, in one run (alternating, medians).

    target/py-venv/bin/maturin develop --release -m crates/trove-py/Cargo.toml
    target/py-venv/bin/python crates/trove-py/bench/tracking.py [--reps 21]

The build times itself (``time.thread_time`` around the work, inside the recipe), so
the figure is the work with tracking on, not the engine's store and lookup; the baseline
is the same function called outside any build.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import tempfile
import time

import trove
from trove import _trove


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def numbers(n: int):
    for i in range(n):
        yield i * 3


def evens(items):
    for x in items:
        if x % 2 == 0:
            yield x


def pipeline(n: int) -> int:
    return sum(evens(numbers(n)))


class Counter(ast.NodeVisitor):
    def __init__(self) -> None:
        self.names = 0

    def visit_Name(self, node: ast.Name) -> None:
        self.names += 1


def visit(tree: ast.AST) -> int:
    counter = Counter()
    counter.visit(tree)
    return counter.names


WORKLOADS = {
    # The worst case: nothing but tiny Python calls (243k of them).
    "fib(25)": (fib, 25),
    # Generators resumed 300k times.
    "generators(200k)": (pipeline, 200_000),
    # The standard library's pure-Python AST visitor over a large module (ast.py).
    "ast.NodeVisitor": (visit, ast.parse(open(ast.__file__).read())),
}


def timed(work, arg) -> float:
    # The thread's CPU time: the machine is shared, and time spent waiting for a core
    # is neither side's cost.
    start = time.thread_time()
    work(arg)
    return time.thread_time() - start


def run(reps: int) -> list:
    best = _trove.code_tracker()
    mechanisms = [best]
    if best == "eval-frame":
        # The 3.11 hook with the recording left out: what CPython's own change (calls
        # not inlined while a hook is set) costs.
        mechanisms.append("eval-frame-bare")
    if best != "profile":
        mechanisms.append("profile")
    engine = trove.Engine(store=tempfile.mkdtemp(prefix="trove-bench-"))

    @engine.recipe(name="bench.tracked")
    def tracked(workload: str) -> float:
        work, arg = WORKLOADS[workload]
        return timed(work, arg)

    rows = []
    for workload, (work, arg) in WORKLOADS.items():
        times = {m: [] for m in ["untracked"] + mechanisms}
        for rep in range(reps):
            order = ["untracked"] + mechanisms
            if rep % 2:
                order.reverse()
            for what in order:
                if what == "untracked":
                    times[what].append(timed(work, arg))
                else:
                    _trove.use_code_tracker(what)
                    times[what].append(tracked.refresh(workload))
        _trove.use_code_tracker(best)
        base = statistics.median(times["untracked"])
        for m in mechanisms:
            med = statistics.median(times[m])
            rows.append((workload, m, med, base))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, default code tracker: {_trove.code_tracker()}, {args.reps} reps")
    print("| build | tracker | tracked | untracked | ratio |")
    print("|---|---|---|---|---|")
    for workload, mechanism, med, base in run(args.reps):
        print(f"| {workload} | {mechanism} | {med * 1e3:.2f} ms | {base * 1e3:.2f} ms | {med / base:.2f} |")


if __name__ == "__main__":
    main()

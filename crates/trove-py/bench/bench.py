"""trove for Python against what Python users would pick instead, side by side in one run.

Every case runs trove and its baseline alternately (the order flips each repetition) and
reports both medians and their ratio (trove / baseline, lower is better); the goals are
those of issue 11. Run by hand, with a release build of the extension:

    bash crates/trove-py/test.sh -q -k nothing            # or any run: makes target/py-venv
    target/py-venv/bin/pip install diskcache==5.6.3 joblib==1.6.0
    (cd crates/trove-py && VIRTUAL_ENV=$PWD/../../target/py-venv \\
        ../../target/py-venv/bin/maturin develop --release)
    target/py-venv/bin/python crates/trove-py/bench/bench.py [--quick] [--case NAME ...]

Output: a Markdown table (the rows of BENCHMARKS.md's "Python" section).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import trove
from trove import _trove

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracking  # noqa: E402  (the call-heavy workloads)

Row = Tuple[str, float, float, str, Optional[bool], str]  # met: None for reference rows
ROOT = tempfile.mkdtemp(prefix="trove-pybench-")
QUICK = False


def alternate(reps: int, a: Callable[[], float], b: Callable[[], float]) -> Tuple[List[float], List[float]]:
    """Runs ``a`` and ``b`` ``reps`` times each, alternating which goes first; each returns
    the seconds one sample took."""
    xs, ys = [], []
    for i in range(reps):
        if i % 2 == 0:
            xs.append(a())
            ys.append(b())
        else:
            ys.append(b())
            xs.append(a())
    return xs, ys


def per_call(fn: Callable[[], object], n: int) -> Callable[[], float]:
    def sample() -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    return sample


def fmt(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def fresh_store(name: str) -> str:
    path = os.path.join(ROOT, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


# ---------------------------------------------------------------- memory hits


def memory_hit_cases(reps: int) -> List[Row]:
    import diskcache
    import joblib

    n = 2_000 if QUICK else 20_000
    engine = trove.Engine(store=fresh_store("memory"))

    @engine.recipe(name="bench.small")
    def small(a: int, b: str) -> dict:
        return {"a": a, "b": b}

    @functools.lru_cache(maxsize=None)
    def small_lru(a: int, b: str) -> dict:
        return {"a": a, "b": b}

    cache = diskcache.Cache(fresh_store("diskcache-memo"))

    @cache.memoize()
    def small_dc(a: int, b: str) -> dict:
        return {"a": a, "b": b}

    memory = joblib.Memory(fresh_store("joblib"), verbose=0)

    def small_jl(a: int, b: str) -> dict:
        return {"a": a, "b": b}

    small_jl = memory.cache(small_jl)

    for f in (small, small_lru, small_dc, small_jl):
        f(1, "a")
    assert small.get_explained(1, "a")[1] == "hit memory"
    rows = []
    trove_hit = per_call(lambda: small(1, "a"), n)
    for name, baseline, goal, ok, slow in (
        ("functools.lru_cache", small_lru, "<= 10", lambda r: r <= 10, False),
        ("diskcache memoize", small_dc, "<= 0.05 (20x faster)", lambda r: r <= 0.05, True),
        ("joblib.Memory", small_jl, "<= 0.05 (20x faster)", lambda r: r <= 0.05, True),
    ):
        m = n // 20 if slow else n
        xs, ys = alternate(reps, per_call(lambda: small(1, "a"), m) if slow else trove_hit, per_call(lambda: baseline(1, "a"), m))
        t, b = statistics.median(xs), statistics.median(ys)
        rows.append((f"memory hit, small args (vs {name})", t, b, goal, ok(t / b), f"median of {reps} x {m} calls; trove without a watcher (one stat of the recipe's source per hit)"))
    with engine.watch():
        small(1, "a")
        small(1, "a")
        fast_before = engine.stats()["fast_hits"]
        for name, baseline, goal, ok, slow in (
            ("functools.lru_cache", small_lru, "<= 10", lambda r: r <= 10, False),
            ("diskcache memoize", small_dc, "<= 0.05 (20x faster)", lambda r: r <= 0.05, True),
            ("joblib.Memory", small_jl, "<= 0.05 (20x faster)", lambda r: r <= 0.05, True),
        ):
            m = n // 20 if slow else n
            xs, ys = alternate(reps, per_call(lambda: small(1, "a"), m) if slow else trove_hit, per_call(lambda: baseline(1, "a"), m))
            t, b = statistics.median(xs), statistics.median(ys)
            rows.append((f"memory hit, small args, watcher on (vs {name})", t, b, goal, ok(t / b), f"median of {reps} x {m} calls; `with engine.watch()`: the fast path (no request to the engine, no system call)"))
        assert engine.stats()["fast_hits"] > fast_before, "the watched hits did not take the fast path"
    cache.close()
    return rows


# ---------------------------------------------------------------- disk hit, small


def disk_hit_small(reps: int) -> List[Row]:
    import diskcache

    keys = 50 if QUICK else 200
    path = fresh_store("disk-small")
    payload = {"rows": list(range(100)), "name": "x" * 200}

    def recipe_on(engine: trove.Engine):
        @engine.recipe(name="bench.disk_small")
        def obj(i: int) -> dict:
            return dict(payload, i=i)

        return obj

    first = recipe_on(trove.Engine(store=path))
    for i in range(keys):
        first(i)
    cache = diskcache.Cache(fresh_store("diskcache-disk"))

    @cache.memoize()
    def obj_dc(i: int) -> dict:
        return dict(payload, i=i)

    for i in range(keys):
        obj_dc(i)

    def trove_batch() -> float:
        # A fresh engine: its memory tier is empty, so every get is a disk hit (index,
        # validation of the trace, blob read and verify, unpickle).
        obj = recipe_on(trove.Engine(store=path))
        start = time.perf_counter()
        for i in range(keys):
            obj(i)
        elapsed = time.perf_counter() - start
        assert obj.get_explained(0)[1] == "hit memory"
        return elapsed / keys

    def dc_batch() -> float:
        start = time.perf_counter()
        for i in range(keys):
            obj_dc(i)
        return (time.perf_counter() - start) / keys

    probe = recipe_on(trove.Engine(store=path))
    assert probe.get_explained(0)[1] == "hit disk"
    xs, ys = alternate(reps, trove_batch, dc_batch)
    t, b = statistics.median(xs), statistics.median(ys)
    cache.close()
    return [("disk hit, small object (vs diskcache memoize)", t, b, "<= 1.0", t / b <= 1.0, f"median of {reps} x {keys} keys, each read once per fresh engine; page cache warm for both; a dict of 100 ints and a 200-char string")]


# ---------------------------------------------------------------- 100 MB numpy


def numpy_disk(reps: int) -> List[Row]:
    size = (10 if QUICK else 100) * 1_000_000
    reps = min(reps, 7)
    array = np.arange(size // 8, dtype=np.float64)
    npy = os.path.join(ROOT, "array.npy")
    np.save(npy, array)
    path = fresh_store("disk-numpy")
    rows = []
    for mmap in (False, True):
        def recipe_on(engine: trove.Engine):
            options = {"mmap": True} if mmap else {}
            try:
                decorate = engine.recipe(name=f"bench.array{'_mmap' if mmap else ''}", **options)
            except TypeError:
                return None  # mmap= not supported by this build

            @decorate
            def big() -> np.ndarray:
                return array

            return big

        first = recipe_on(trove.Engine(store=path))
        if first is None:
            rows.append((f"disk hit, {size // 1_000_000} MB numpy, mmap=True (vs numpy.load mmap_mode='r')", float("nan"), float("nan"), "<= 1 ms", False, "not run: recipe(mmap=True) is not supported by this build"))
            continue
        first()
        if mmap:
            # A buffer file is vouched for by its stat only once it was hashed outside
            # the racy window (2 s after its last change); until then every map hashes
            # it. The case measures the steady state: the first read after the window
            # (below) hashes and stamps it.
            time.sleep(2.1)
        warm = recipe_on(trove.Engine(store=path))
        start = time.perf_counter()
        assert warm.get_explained()[1] == "hit disk"
        first_hit = time.perf_counter() - start

        def trove_load() -> float:
            big = recipe_on(trove.Engine(store=path))
            start = time.perf_counter()
            value, reason = big.get_explained()
            elapsed = time.perf_counter() - start
            assert reason == "hit disk", reason
            assert value.shape == array.shape
            return elapsed

        def np_load() -> float:
            start = time.perf_counter()
            value = np.load(npy, mmap_mode="r" if mmap else None)
            elapsed = time.perf_counter() - start
            assert value.shape == array.shape
            return elapsed

        xs, ys = alternate(reps, trove_load, np_load)
        t, b = statistics.median(xs), statistics.median(ys)
        if mmap:
            rows.append((f"disk hit, {size // 1_000_000} MB numpy, mmap=True (vs numpy.load mmap_mode='r')", t, b, "<= 1 ms (absolute)", t <= 1e-3, f"median of {reps}; a fresh engine each time; the array is read-only, mapped from the buffer file, verified by its stat stamp (the first read after the racy window hashed it: {fmt(first_hit)})"))
        else:
            rows.append((f"disk hit, {size // 1_000_000} MB numpy (vs numpy.load)", t, b, "<= 1.2", t / b <= 1.2, f"median of {reps}; a fresh engine each time; page cache warm for both; includes blake3 verify of the blob"))
    return rows


# ---------------------------------------------------------------- hashing


def hashing(reps: int) -> List[Row]:
    import joblib

    size = (10 if QUICK else 100) * 1_000_000
    reps = min(reps, 9)
    array = np.random.default_rng(0).random(size // 8)

    def trove_hash() -> float:
        start = time.perf_counter()
        trove.canonical(array)
        return time.perf_counter() - start

    def joblib_hash() -> float:
        start = time.perf_counter()
        joblib.hash(array)
        return time.perf_counter() - start

    xs, ys = alternate(reps, trove_hash, joblib_hash)
    t, b = statistics.median(xs), statistics.median(ys)
    return [(f"hash a {size // 1_000_000} MB array argument (vs joblib.hash)", t, b, "<= 0.2 (5x faster)", t / b <= 0.2, f"median of {reps}; trove.canonical (blake3 on all cores, GIL released) vs joblib.hash (md5 of its pickle)")]


# ---------------------------------------------------------------- tracking


def tracking_overhead(reps: int) -> List[Row]:
    rows = []
    for workload, mechanism, med, base in tracking.run(reps):
        if mechanism == "profile" and _trove.code_tracker() != "profile":
            note = "the fallback mechanism, for comparison"
        elif mechanism == "eval-frame-bare":
            note = "a PEP 523 hook that records nothing: CPython's own cost of any hook"
        else:
            note = "the default mechanism"
        reference = mechanism != _trove.code_tracker()
        goal = "(reference)" if reference else "<= 1.3"
        rows.append((f"tracking overhead, {workload} ({mechanism}, Python {sys.version_info[0]}.{sys.version_info[1]}) vs untracked", med, base, goal, None if reference else med / base <= 1.3, f"median of {reps}; thread CPU time of the work inside the build; {note}"))
    return rows


CASES: Dict[str, Callable[[int], List[Row]]] = {
    "memory-hit": memory_hit_cases,
    "disk-hit-small": disk_hit_small,
    "numpy-disk": numpy_disk,
    "hash": hashing,
    "tracking": tracking_overhead,
}


def main() -> None:
    global QUICK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 10 MB arrays")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args()
    QUICK = args.quick
    reps = 5 if QUICK else 15
    import diskcache
    import joblib

    print(f"Python {sys.version.split()[0]}; numpy {np.__version__}, diskcache {diskcache.__version__}, joblib {joblib.__version__}; code tracker {_trove.code_tracker()}")
    print()
    print("| case | trove | baseline | ratio | goal | met | note |")
    print("|---|---|---|---|---|---|---|")
    # The engines' project root (and so the watcher's root) is the run's own directory,
    # not wherever the script was started from (a repository with a target/ of its own
    # would be crawled, and its events would empty the fast path's map).
    os.chdir(ROOT)
    try:
        for name in args.case or list(CASES):
            for case, t, b, goal, met, note in CASES[name](reps):
                ratio = t / b if b == b and b else float("nan")
                verdict = "-" if met is None else ("yes" if met else "**no**")
                print(f"| {case} | {fmt(t)} | {fmt(b)} | {ratio:.3g} | {goal} | {verdict} | {note} |", flush=True)
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    main()

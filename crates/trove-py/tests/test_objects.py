"""Objects in one process: identity, single flight across threads, residency, checks,
expiry, counters, refresh, exceptions, pickling, methods and nested recipes."""

from __future__ import annotations

import os
import threading
import time
import warnings

import pytest

import trove


@pytest.fixture
def engine(project):
    return trove.Engine(project.root)


def test_every_caller_gets_the_same_object_while_it_is_valid(engine):
    builds = []

    @engine.recipe
    def table(n):
        builds.append(n)
        return {"rows": list(range(n))}

    first, reason = table.get_explained(3)
    assert reason == "built: no entry"
    second, reason = table.get_explained(3)
    assert reason == "hit memory"
    assert second is first
    assert table(n=3) is first  # the same key, however the arguments are passed
    assert builds == [3]


def test_a_disk_hit_is_one_object_for_every_caller_too(project, engine):
    @engine.recipe(name="t")
    def table():
        return [1, 2, 3]

    table()
    other = trove.Engine(project.root)  # a second memory tier over the same store
    again = other.recipe(name="t")(table.__wrapped__)
    a, reason = again.get_explained()
    assert reason == "hit disk"
    b, reason = again.get_explained()
    assert reason == "hit memory" and a is b


def test_sixteen_threads_asking_for_one_key_build_once_and_share_the_object(engine):
    builds = []
    barrier = threading.Barrier(16)

    @engine.recipe
    def slow():
        builds.append(1)
        time.sleep(0.3)  # long enough for every thread to ask while it builds
        return object.__new__(Box)

    results = [None] * 16

    def ask(i):
        barrier.wait()
        results[i] = slow.get_explained()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    objects = {id(r[0]) for r in results}
    assert len(objects) == 1
    reasons = sorted(r[1] for r in results)
    assert reasons.count("built: no entry") == 1
    assert all(r in ("built by another caller: no entry", "hit memory", "built: no entry") for r in reasons)


class Box:
    pass


def test_residency_goes_absent_in_memory_on_disk_stale(project, engine):
    project.write("data.txt", "1")

    @engine.recipe(name="r")
    def read():
        with open("data.txt") as f:
            return f.read()

    assert read.residency() == "absent"
    assert read.explain() == "would build: no entry"
    read()
    assert read.residency() == "in_memory"
    assert read.explain() == "would hit memory"
    fresh = trove.Engine(project.root).recipe(name="r")(read.__wrapped__)
    assert fresh.residency() == "on_disk"
    assert fresh.explain() == "would hit disk"
    project.write("data.txt", "2")
    assert fresh.residency().startswith("stale: data.txt changed (blake3 ")
    assert read.explain().startswith("would build: data.txt changed")


def test_a_failed_check_quarantines_the_stored_object_and_rebuilds(project, engine):
    builds = []

    def make():
        builds.append(1)
        return {"rows": len(builds)}

    engine.recipe(name="c", check=lambda t: None)(make)()
    strict = trove.Engine(project.root).recipe(name="c", check=lambda t: None if t["rows"] > 1 else "rows > 1")(make)
    value, reason = strict.get_explained()
    assert reason == "built: check failed: rows > 1"
    assert value == {"rows": 2}
    assert builds == [1, 1]
    assert trove.Engine(project.root).recipe(name="c", check=lambda t: t["rows"] > 1)(make).get_explained()[1] == "hit disk"


def test_an_object_older_than_max_age_is_rebuilt(engine):
    builds = []

    @engine.recipe(max_age=0.3)
    def clock():
        builds.append(1)
        return len(builds)

    assert clock() == 1
    assert clock.get_explained()[1] == "hit memory"
    time.sleep(0.5)  # max_age has passed: no race, the deadline is behind us
    value, reason = clock.get_explained()
    assert (value, reason) == (2, "built: expired (max_age 300ms)") or reason.startswith("built: expired")
    assert builds == [1, 1]


def test_a_counter_bump_rebuilds_what_it_covers(engine):
    builds = []

    @engine.recipe
    def model():
        builds.append(1)
        return "m"

    engine.set_counter("alice", 1)
    model()
    assert model.get_explained()[1] == "hit memory"
    engine.set_counter("alice", 2)
    assert model.get_explained()[1] == "built: counter alice 1 -> 2"
    assert builds == [1, 1]


def test_refresh_builds_anew_and_replaces_what_is_stored(engine):
    builds = []

    @engine.recipe
    def stamp():
        builds.append(1)
        return len(builds)

    assert stamp() == 1
    assert stamp.refresh() == 2
    assert stamp.get_explained() == (2, "hit memory")
    assert builds == [1, 1]


def test_an_exception_reaches_the_caller_and_every_waiter_and_nothing_is_cached(engine):
    builds = []
    barrier = threading.Barrier(4)

    class NoRows(ValueError):
        pass

    @engine.recipe
    def broken():
        builds.append(1)
        time.sleep(0.3)
        raise NoRows("no rows in data.csv")

    caught = [None] * 4

    def ask(i):
        barrier.wait()
        try:
            broken()
        except NoRows as e:
            caught[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1
    assert all(isinstance(e, NoRows) for e in caught)
    assert len({id(e) for e in caught}) == 1  # the very exception the build raised
    assert broken.residency() == "absent"
    with pytest.raises(NoRows, match="no rows"):
        broken()
    assert len(builds) == 2


def test_an_unpicklable_result_is_a_type_error_and_nothing_is_cached(engine):
    @engine.recipe
    def handle():
        return threading.Lock()

    with pytest.raises(TypeError, match="cannot be pickled"):
        handle()
    assert handle.residency() == "absent"


def test_methods_and_staticmethods_are_recipes(engine):
    builds = []

    class Factory:
        def __init__(self, scale):
            self.scale = scale

        def __trove_key__(self):
            return self.scale

        @engine.recipe
        def get_x(self, n: int) -> int:
            """Scaled n."""
            builds.append(("get_x", self.scale, n))
            return self.scale * n

        @staticmethod
        @engine.recipe
        def plain(n):
            builds.append(("plain", n))
            return n

        @engine.recipe
        @staticmethod
        def other(n):
            builds.append(("other", n))
            return -n

    f = Factory(10)
    assert f.get_x(2) == 20
    assert Factory(10).get_x(2) == 20
    assert Factory(3).get_x(2) == 6
    assert Factory.plain(5) == 5 and f.plain(5) == 5
    assert Factory.other(5) == -5 and f.other(5) == -5
    assert builds == [("get_x", 10, 2), ("get_x", 3, 2), ("plain", 5), ("other", 5)]
    assert Factory.get_x.__doc__ == "Scaled n."
    assert Factory.get_x.__wrapped__.__annotations__ == {"n": "int", "return": "int"}


def test_recipes_a_factory_makes_with_different_captured_values_do_not_share_objects(project, engine):
    builds = []

    def loader(source, lock, engine):
        @engine.recipe(ignore=("lock", "builds"))
        def load(day):
            with lock:
                builds.append((source, day))
            return f"{source}:{day}"

        return load

    lock = threading.Lock()
    eu, us, eu_again = (loader(s, lock, engine) for s in ("eu", "us", "eu"))
    assert eu("mon") == "eu:mon"
    # One qualified name, two recipes: `us` is not served what `eu` built.
    assert us.get_explained("mon") == ("us:mon", "built: no entry")
    assert eu_again.get_explained("mon") == ("eu:mon", "hit memory")
    assert builds == [("eu", "mon"), ("us", "mon")]
    assert eu.name.endswith(".loader.<locals>.load[source='eu']")
    # Another engine on the store (as another process): each gets its own from disk.
    other = trove.Engine(project.root)
    assert loader("us", lock, other).get_explained("mon") == ("us:mon", "hit disk")
    assert loader("eu", lock, other).get_explained("mon") == ("eu:mon", "hit disk")
    assert len(builds) == 2

    # A captured value trove cannot key is named by its type: silently for plumbing (a
    # lock), with a warning naming the variable and the ways out otherwise.
    def guarded(lock):
        @engine.recipe
        def f(x):
            with lock:
                return x

        return f

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert guarded(threading.Lock()).name.endswith("f[lock='<_thread.lock>']")

    class Opaque:
        pass

    def holding(thing):
        @engine.recipe
        def k(x):
            return (thing, x)[1]

        return k

    with pytest.warns(RuntimeWarning, match=r"captures `thing` \(.*Opaque\).*ignore=\('thing',\)") as seen:
        assert holding(Opaque()).name.endswith(".Opaque>']")
    assert seen[0].filename == __file__  # points at the code that made the recipe

    def mapped(fn):
        @engine.recipe
        def g(x):
            return fn(x)

        return g

    assert mapped(abs).name.endswith("g[fn='<builtin_function_or_method builtins.abs>']")

    # A recipe that asks another through the engine it captured.
    def composed(scale):
        @engine.recipe
        def h(x):
            return engine.recipe(name="inner")(lambda y: y + 1)(x) * scale

        return h

    assert composed(3)(1) == 6 and composed(4)(1) == 8
    assert mapped(abs)(-2) == 2 and mapped(str)(-2) == "-2"
    with pytest.raises(TypeError, match="ignore names no parameter or captured variable"):
        engine.recipe(ignore=("nope",))(lambda x: x)


def test_a_nested_recipe_is_a_dependency_with_early_cutoff(project, engine):
    project.write("raw.txt", "a")
    builds = []

    @engine.recipe
    def parsed():
        builds.append("parsed")
        with open("raw.txt") as f:
            return f.read().strip().upper()

    @engine.recipe
    def report():
        builds.append("report")
        return "report of " + parsed()

    assert report() == "report of A"
    assert builds == ["report", "parsed"]
    project.write("raw.txt", "a\n")  # changes the file, not what parsed() makes of it
    value, reason = report.get_explained()
    assert reason == "hit memory" and value == "report of A"
    assert builds == ["report", "parsed", "parsed"]
    project.write("raw.txt", "b")
    value, reason = report.get_explained()
    assert value == "report of B"
    assert reason.startswith("built: dependency ")
    assert builds[-2:] == ["parsed", "report"]


def test_a_recipe_asking_for_itself_is_a_cycle_error(engine):
    @engine.recipe
    def ouroboros(n):
        return ouroboros(n)

    with pytest.raises(trove.CycleError):
        ouroboros(1)


def test_numpy_arrays_come_back_equal_from_disk(project, engine):
    import numpy as np

    @engine.recipe(name="arr")
    def arr(n):
        return {"a": np.arange(n, dtype=np.float64), "label": "x"}

    built = arr(1000)
    served, reason = trove.Engine(project.root).recipe(name="arr")(arr.__wrapped__).get_explained(1000)
    assert reason == "hit disk"
    assert served["label"] == "x"
    assert np.array_equal(served["a"], built["a"]) and served["a"].dtype == np.float64


def test_stats_status_and_gc(project, engine):
    project.write("n.txt", "7")

    @engine.recipe(name="s")
    def s(n):
        with open("n.txt") as f:
            return n + int(f.read())

    s(1)
    s(1)
    stats = engine.stats()
    assert stats["builds"] == 1 and stats["memory_hits"] == 1
    # Every counter of the engine's, the file the build read hashed once.
    assert stats["files_hashed"] >= 1 and stats["waits"] == 0
    assert {"absences_vouched", "dirs_answered", "files_checked", "shared_hits"} <= set(stats)
    [entry] = engine.status()
    assert entry["recipe"] == "s" and entry["args"] == "(n=1)" and entry["residency"] == "in_memory"
    report = engine.gc(dry_run=True)
    assert report["removals"] == [] and report["kept"] == 1
    with engine.watch():
        assert s(1) == 8


def test_ctrl_c_in_a_build_leaves_no_lock_and_no_object(engine):
    calls = []

    @engine.recipe
    def interrupted():
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return "done"

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert interrupted.residency() == "absent"
    assert interrupted.get_explained() == ("done", "built: no entry")  # the key's lock is free


def test_a_module_edited_after_it_was_loaded_is_not_what_ran_so_nothing_is_stored(project, engine, monkeypatch):
    import importlib
    import os
    import sys

    path = project.write("live_helper.py", "def f():\n    return 1\n")
    os.utime(path, (time.time() - 60, time.time() - 60))
    monkeypatch.syspath_prepend(str(project.root))
    live_helper = importlib.import_module("live_helper")
    try:

        @engine.recipe
        def uses():
            return live_helper.f()

        assert uses.get_explained() == (1, "built: no entry")
        project.write("live_helper.py", "def f():\n    return 2\n")  # the process still runs f() -> 1
        with pytest.warns(RuntimeWarning, match="changed after its module was loaded"):
            value, reason = uses.get_explained()
        assert value == 1 and reason.startswith("built: live_helper.py (py-ast) changed")
        assert uses.residency().startswith("stale: live_helper.py (py-ast) changed")
    finally:
        sys.modules.pop("live_helper", None)


def test_counters_from_trove_ron_and_the_local_overlay(tmp_path):
    """`versions` in trove.ron covers every recipe; trove.local.ron replaces a counter
    for one developer; going back to an earlier value serves the object built under it."""
    builds = []
    config = tmp_path / "trove.ron"
    local = tmp_path / "trove.local.ron"

    def recipe():
        # A fresh engine reads the configuration (and its overlay) again.
        engine = trove.Engine(config)

        @engine.recipe(name="tests.counted")
        def counted(n: int) -> int:
            builds.append(n)
            return n * 2

        return counted

    config.write_text('(versions: { "alice": 1, "bob": 1 })')
    assert recipe().get_explained(1) == (2, "built: no entry")
    assert recipe().get_explained(1) == (2, "hit disk")

    config.write_text('(versions: { "alice": 2, "bob": 1 })')
    assert recipe().explain(1) == "would build: counter alice 1 -> 2"
    assert recipe().get_explained(1) == (2, "built: counter alice 1 -> 2")

    local.write_text('(versions: { "bob": 5 })')
    assert recipe().get_explained(1) == (2, "built: counter bob 1 -> 5")
    assert recipe().get_explained(1) == (2, "hit disk")

    # A counter only the overlay names covers every recipe too.
    local.write_text('(versions: { "bob": 5, "carol": 1 })')
    assert recipe().get_explained(1) == (2, "built: counter carol (none) -> 1")

    # Without the overlay, the object built under trove.ron's counters is still stored.
    local.unlink()
    assert recipe().get_explained(1) == (2, "hit disk")
    assert builds == [1, 1, 1, 1]
    assert recipe().explain(1) == "would hit disk"


def test_a_counter_in_the_local_overlay_that_is_not_a_counter_is_an_error(tmp_path):
    (tmp_path / "trove.ron").write_text("()")
    (tmp_path / "trove.local.ron").write_text('(store: (path: "elsewhere"))')
    with pytest.raises(trove.TroveError, match="trove.local.ron"):
        trove.Engine(tmp_path / "trove.ron")


def test_under_a_watch_an_edited_source_file_is_still_seen(tmp_path, monkeypatch):
    """While an engine watches, `py-ast` inputs are vouched for by a watch on their
    directories instead of a stat per request: an edit must still invalidate."""
    import importlib
    import uuid

    from trove import _trove

    monkeypatch.chdir(tmp_path)
    name = f"watched_helper_{uuid.uuid4().hex[:8]}"
    helper = tmp_path / f"{name}.py"
    helper.write_text("def scale(x):\n    return 2 * x\n")
    # A file changed less than 2 s before it is checked is racy, and checked with stat
    # every time; past that window the watch vouches for it.
    time.sleep(2.1)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    engine = trove.Engine(store=tmp_path / ".trove")

    @engine.recipe(name="tests.watched")
    def scaled(x: int) -> int:
        return module.scale(x)

    with engine.watch():
        assert scaled.get_explained(3) == (6, "built: no entry")
        assert scaled.get_explained(3) == (6, "hit memory")
        assert _trove.ast_clean(str(helper.resolve()))  # answered from the watch
        helper.write_text("def scale(x):\n    return 3 * x\n")
        deadline = time.monotonic() + 10
        while scaled.explain(3) == "would hit memory" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scaled.explain(3).startswith(f"would build: {name}.py (py-ast) changed")
        # The running process still has the old code: built, returned, not stored.
        with pytest.warns(RuntimeWarning, match="changed after its module was loaded"):
            value, reason = scaled.get_explained(3)
        assert reason.startswith(f"built: {name}.py (py-ast) changed")


def test_a_plugin_written_after_trove_was_imported_and_imported_by_name_is_stored(tmp_path, monkeypatch):
    """importlib.import_module raises no import audit event: its start is still known,
    so a plugin file written before its first import is not taken for an edit made after
    it was loaded (which would keep the object from being stored)."""
    import uuid

    name = f"late_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def run():\n    return 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    store = tmp_path / ".trove"

    def recipe():
        engine = trove.Engine(store=store)

        @engine.recipe(name="tests.late_plugin")
        def use(plugin: str) -> int:
            import importlib

            return importlib.import_module(plugin).run()

        return use

    assert recipe().get_explained(name) == (7, "built: no entry")
    assert recipe().get_explained(name) == (7, "hit disk")


def test_a_plugin_rewritten_right_after_its_import_is_not_what_ran(tmp_path, monkeypatch):
    """A file written just before its import and one rewritten just after it carry the
    same file time (times lag the clock by up to a tick): the bytes the module was
    compiled from tell them apart, so the first is stored and the second is not."""
    import importlib
    import uuid

    monkeypatch.syspath_prepend(str(tmp_path))
    engine = trove.Engine(store=tmp_path / ".trove")

    @engine.recipe(name="tests.rewritten_plugin")
    def use(plugin: str, rewrite: bool) -> int:
        value = importlib.import_module(plugin).run()
        if rewrite:  # the same size, within the same clock tick as the import
            (tmp_path / f"{plugin}.py").write_text("def run():\n    return 8\n")
        return value

    fresh = f"fresh_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{fresh}.py").write_text("def run():\n    return 7\n")
    assert use.get_explained(fresh, False) == (7, "built: no entry")
    assert use.residency(fresh, False) == "in_memory"

    rewritten = f"rewritten_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{rewritten}.py").write_text("def run():\n    return 7\n")
    with pytest.warns(RuntimeWarning, match="changed after its module was loaded"):
        assert use.get_explained(rewritten, True) == (7, "built: no entry")
    assert use.residency(rewritten, True) == "absent"


def _alive_with(marker: str) -> int:
    import gc

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is dict and o.get("marker") == marker)


def test_an_engine_the_program_lets_go_of_is_freed_with_its_memory_tier(project):
    # A notebook cell run again makes a new engine and recipe; the old ones, and the
    # objects their memory tier held, must not stay until the process ends.
    import gc
    import weakref

    def cell(marker: str, n: int) -> "weakref.ref[trove.Engine]":
        engine = trove.Engine(project.root)

        @engine.recipe(name="cell")
        def table(n):
            return {"marker": marker, "rows": list(range(n))}

        assert table(n)["marker"] == marker
        assert table(n) is table(n)
        return weakref.ref(engine)

    first = cell("first run", 3)
    gc.collect()
    assert first() is None, "the engine is freed once nothing refers to it"
    assert _alive_with("first run") == 0, "and so are the objects its memory tier held"
    second = cell("second run", 4)
    gc.collect()
    assert second() is None and _alive_with("second run") == 0

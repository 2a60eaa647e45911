"""The fast path of watched memory hits: while an engine watches, a call by position whose
object the watcher vouches for is answered without a request to the engine. Serving a
stale object is the worst bug trove can have, so every change the engine sees, the fast
path sees: edits under the watcher (data and code), counters, expiry, refresh, the
environment, and calls made inside a build go through the engine."""

from __future__ import annotations

import os
import time
import uuid

import pytest

import trove


@pytest.fixture
def engine(project):
    return trove.Engine(project.root)


def fast_hits(engine) -> int:
    return engine.stats()["fast_hits"]


def until(condition, timeout: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``timeout`` (a watcher's event takes a moment)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_watched_memory_hit_is_answered_by_the_fast_path(engine):
    builds = []

    @engine.recipe(name="fast.table")
    def table(n: int, label: str) -> dict:
        builds.append(n)
        return {"n": n, "label": label}

    with engine.watch():
        first = table(3, "a")
        assert table(3, "a") is first  # a memory hit through the engine: vouched
        before = fast_hits(engine)
        for _ in range(10):
            assert table(3, "a") is first
        assert fast_hits(engine) == before + 10
        assert builds == [3]
    # Without the watcher nothing is vouched for: every hit is checked.
    before = fast_hits(engine)
    assert table(3, "a") is first
    assert fast_hits(engine) == before


def test_one_one_point_oh_and_true_are_three_keys_on_the_fast_path(engine):
    @engine.recipe(name="fast.typed")
    def typed(x) -> str:
        return type(x).__name__

    with engine.watch():
        for _ in range(3):
            assert (typed(1), typed(1.0), typed(True)) == ("int", "float", "bool")
    assert fast_hits(engine) > 0


def test_a_data_file_edited_under_the_watcher_is_seen(project, engine):
    project.write("data.txt", "1")

    @engine.recipe(name="fast.data")
    def scaled(n: int) -> int:
        with open("data.txt") as f:
            return int(f.read()) * n

    with engine.watch():
        assert scaled(2) == 2
        assert scaled(2) == 2
        before = fast_hits(engine)
        assert scaled(2) == 2 and fast_hits(engine) == before + 1
        project.write("data.txt", "5")
        assert until(lambda: scaled(2) == 10)
        assert scaled(2) == 10 and scaled(2) == 10


def test_a_helper_module_edited_under_the_watcher_is_seen(project, engine, monkeypatch):
    import importlib
    import sys

    name = f"fast_helper_{uuid.uuid4().hex[:8]}"
    project.write(f"{name}.py", "def scale(x):\n    return 2 * x\n")
    # A file changed less than 2 s before it is checked is racy, checked with stat every
    # time (so never vouched for); past that window the source watch vouches for it.
    time.sleep(2.1)
    monkeypatch.syspath_prepend(str(project.root))
    helper = importlib.import_module(name)
    builds = []
    try:

        @engine.recipe(name="fast.helper")
        def scaled(x: int) -> int:
            builds.append(x)
            return helper.scale(x)

        with engine.watch():
            assert scaled(3) == 6
            assert scaled(3) == 6
            before = fast_hits(engine)
            assert scaled(3) == 6 and fast_hits(engine) == before + 1
            project.write(f"{name}.py", "def scale(x):\n    return 3 * x\n")
            # The process still runs the old code: the object is built again (and, not
            # being the file's code, returned but not stored) on every call from now on.
            with pytest.warns(RuntimeWarning, match="changed after its module was loaded"):
                assert until(lambda: scaled(3) == 6 and len(builds) > 1)
            n = len(builds)
            with pytest.warns(RuntimeWarning):
                scaled(3)
            assert len(builds) == n + 1
    finally:
        sys.modules.pop(name, None)


def test_a_counter_set_is_seen(engine):
    builds = []

    @engine.recipe(name="fast.counted")
    def counted(n: int) -> int:
        builds.append(n)
        return len(builds)

    with engine.watch():
        assert counted(1) == 1
        assert counted(1) == 1 and counted(1) == 1
        assert fast_hits(engine) > 0
        engine.set_counter("alice", 2)
        assert counted(1) == 2  # at once: no event to wait for
        engine.set_counter("alice", 3, recipe="fast.counted")
        assert counted(1) == 3


def test_an_expired_object_is_not_served(engine):
    builds = []

    @engine.recipe(name="fast.expiring", max_age=1)
    def expiring(n: int) -> int:
        builds.append(n)
        return len(builds)

    with engine.watch():
        assert expiring(1) == 1
        assert expiring(1) == 1 and expiring(1) == 1
        assert fast_hits(engine) > 0
        time.sleep(1.1)
        assert expiring(1) == 2


def test_refresh_is_seen(engine):
    builds = []

    @engine.recipe(name="fast.refreshed")
    def made(n: int) -> list:
        builds.append(n)
        return [n, len(builds)]

    with engine.watch():
        first = made(1)
        assert made(1) is first and made(1) is first
        assert fast_hits(engine) > 0
        second = made.refresh(1)
        assert second == [1, 2] and first == [1, 1]
        assert made(1) is second and made(1) is second


def test_an_environment_variable_changed_is_seen_at_once(engine, monkeypatch):
    monkeypatch.setenv("TROVE_TEST_FAST", "a")

    @engine.recipe(name="fast.env")
    def env(n: int) -> str:
        return os.environ["TROVE_TEST_FAST"] * n

    with engine.watch():
        assert env(2) == "aa"
        assert env(2) == "aa" and env(2) == "aa"
        monkeypatch.setenv("TROVE_TEST_FAST", "b")
        assert env(2) == "bb"


def test_a_recipe_called_in_a_build_is_that_builds_dependency(project, engine):
    project.write("data.txt", "1")

    @engine.recipe(name="fast.inner")
    def inner(n: int) -> int:
        with open("data.txt") as f:
            return int(f.read()) * n

    @engine.recipe(name="fast.outer")
    def outer(n: int) -> int:
        return inner(n) + 100

    with engine.watch():
        assert inner(2) == 2 and inner(2) == 2 and inner(2) == 2
        assert fast_hits(engine) > 0
        assert outer(2) == 102  # inner(2) served through the build's Cx: recorded
        assert outer(2) == 102
        project.write("data.txt", "5")
        assert until(lambda: outer(2) == 110)

"""Every function that ran during a build is recorded, however it came to run, under each
code-tracking mechanism: the PEP 523 frame-evaluation hook (CPython 3.11),
``sys.monitoring`` (3.12+) and the profile function (the fallback everywhere).

The helper modules are imported before the build starts, so only their code running in
the build can make them inputs (an import during the build would record them anyway).
"""

from __future__ import annotations

import sys

import pytest

from trove import _trove

DEFAULT = _trove.code_tracker()
TRACKERS = sorted({DEFAULT, "profile"})

HELPERS = {
    "plain": """
        def add(x):
            return x + 1
    """,
    "gens": """
        def numbers():
            yield 1
            yield 2
            yield 3
    """,
    "coros": """
        import asyncio

        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
    """,
    "items": """
        class Table:
            def __getitem__(self, k):
                return 3 * k
    """,
    "props": """
        class Point:
            @property
            def x(self):
                return 5
    """,
    "inits": """
        class Box:
            def __init__(self, v):
                self.v = v + 1
    """,
    "keys": """
        def key(x):
            return -x
    """,
    "threads": """
        def work(out):
            out.append(7)
    """,
    "pool": """
        def work(x):
            return x * 10
    """,
}

RECIPES = """
    import asyncio, threading, trove
    from concurrent.futures import ThreadPoolExecutor
    from buildlog import log
    import plain, gens, coros, items, props, inits, keys, threads, pool

    # A generator started before the build: the build only resumes it.
    STARTED = gens.numbers()
    next(STARTED)

    @trove.recipe
    def everything():
        log("everything")
        total = 0
        for i in range(100):                      # warm enough to be specialised
            total += plain.add(i)
            total += items.Table()[i]
            total += props.Point().x
            total += inits.Box(i).v
        total += next(STARTED)
        total += asyncio.run(coros.double(4))
        total += sorted([3, 1, 2], key=keys.key)[0]
        out = []
        t = threading.Thread(target=threads.work, args=(out,))
        t.start(); t.join()
        total += out[0]
        with ThreadPoolExecutor(1) as executor:
            total += executor.submit(pool.work, 2).result()
        return total
"""

EDITS = [
    ("plain", "x + 1", "x + 2"),
    ("gens", "yield 2", "yield 20"),
    ("coros", "2 * x", "3 * x"),
    ("items", "3 * k", "4 * k"),
    ("props", "return 5", "return 6"),
    ("inits", "v + 1", "v + 2"),
    ("keys", "return -x", "return x"),
    ("threads", "append(7)", "append(8)"),
    ("pool", "x * 10", "x * 11"),
]


@pytest.mark.parametrize("tracker", TRACKERS)
def test_every_way_code_runs_in_a_build_is_recorded(project, tracker):
    for name, text in HELPERS.items():
        project.write(f"{name}.py", text)
    project.write("recipes.py", RECIPES)
    env = {"TROVE_CODE_TRACKER": tracker}

    first = project.call("everything", **env)
    assert first["reason"] == "built: no entry"
    assert project.call("everything", **env)["reason"] == "hit disk"
    project.edit("plain.py", "return x + 1", "return x + 1  # a comment: not code")
    assert project.call("everything", **env)["reason"] == "hit disk"
    assert project.builds() == ["everything"]

    value = first["value"]
    for module, old, new in EDITS:
        project.edit(f"{module}.py", old, new)
        served = project.call("everything", **env)
        assert served["reason"].startswith(f"built: {module}.py (py-ast) changed"), (module, served)
        assert served["value"] != value, module
        value = served["value"]
        assert project.builds() == ["everything"], module


def test_the_mechanism_is_chosen_by_the_interpreters_version():
    expected = {(3, 11): "eval-frame"}.get(sys.version_info[:2], "monitoring")
    if sys.version_info[:2] < (3, 11):
        expected = "profile"
    assert DEFAULT == expected


@pytest.mark.parametrize("tracker", TRACKERS)
def test_the_hook_is_set_only_while_a_build_runs(project, tracker):
    out = project.run(
        """
        import trove
        from trove import _trove

        engine = trove.Engine(store=".store")

        @engine.recipe
        def inside():
            return _trove.code_hook_set()

        @engine.recipe
        def fails():
            raise ValueError("no")

        print(_trove.code_tracker(), _trove.code_hook_set(), inside(), _trove.code_hook_set())
        try:
            fails()
        except ValueError:
            pass
        print(_trove.code_hook_set())
        """,
        TROVE_CODE_TRACKER=tracker,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [tracker, "False", "True", "False", "False"]


@pytest.mark.skipif(DEFAULT == "profile", reason="the profile function cannot share with cProfile")
def test_code_is_tracked_under_cprofile_too(project):
    project.write("helper.py", """
        def scale(x):
            return 2 * x
    """)
    project.write("recipes.py", """
        import trove, helper
        from buildlog import log

        @trove.recipe
        def table(n):
            log(f"table {n}")
            return helper.scale(n)
    """)
    script = """
        import cProfile, io, pstats, recipes
        profiler = cProfile.Profile()
        value, reason = profiler.runcall(recipes.table.get_explained, 21)
        print(value, reason)
    """
    out = project.run(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42 built: no entry"
    project.edit("helper.py", "2 * x", "3 * x")
    out = project.run(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("63 built: helper.py (py-ast) changed")
    assert project.builds() == ["table 21", "table 21"]

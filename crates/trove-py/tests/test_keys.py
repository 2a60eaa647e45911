"""Arguments are keyed by their value, canonically; anything else is a TypeError."""

from __future__ import annotations

import dataclasses
import enum
import pathlib
from collections import namedtuple

import pytest

import trove
from trove import canonical


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Window:
    start: int
    days: int = 30


Point = namedtuple("Point", "x y")


def test_the_canonical_text_of_each_supported_type():
    assert canonical(None) == "None"
    assert canonical((True, 1, 1.0, -0.0, float("nan"))) == "(True, 1, 1.0, -0.0, nan)"
    assert canonical(["a", b"b", bytearray(b"c")]) == "['a', b'b', bytearray(b'c')]"
    assert canonical({"b": 2, "a": 1}) == "{'a': 1, 'b': 2}"
    assert canonical({3, 1, 2}) == "set({1, 2, 3})"
    assert canonical(frozenset({"x"})) == "frozenset({'x'})"
    assert canonical((1,)) == "(1,)"
    assert canonical(pathlib.Path("data/x.csv")) == "Path('data/x.csv')"
    assert canonical(Color.RED) == "test_keys.Color.RED"
    assert canonical(Window(1)) == "test_keys.Window(start=1, days=30)"
    assert canonical(Point(1, 2)) == "test_keys.Point(x=1, y=2)"


def test_equal_values_of_different_types_key_differently():
    texts = {canonical(v) for v in (1, 1.0, True, "1", (1,), [1])}
    assert len(texts) == 6


def test_dict_and_set_order_does_not_matter():
    assert canonical({"a": 1, "b": {2, 1}}) == canonical({"b": {1, 2}, "a": 1})


def test_numpy_arrays_are_keyed_by_dtype_shape_and_bytes():
    import numpy as np
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert canonical(a) == canonical(a.copy())
    assert canonical(a) == canonical(np.asfortranarray(a))  # same values, other layout
    assert canonical(a) != canonical(a.astype(np.int32))
    assert canonical(a) != canonical(a.reshape(4, 3))
    assert canonical(a).startswith("ndarray(dtype='<i8', shape=(3, 4), blake3=")
    big = np.zeros(3_000_000)
    assert canonical(big) != canonical(np.ones(3_000_000))
    with pytest.raises(TypeError, match="dtype object"):
        canonical(np.array([object()]))


def test_an_unsupported_type_is_a_type_error_naming_it_and_the_way_out():
    class Model:
        pass

    with pytest.raises(TypeError) as e:
        canonical([Model()])
    assert "test_keys.test_an_unsupported_type_is_a_type_error_naming_it_and_the_way_out.<locals>.Model" in str(e.value)
    assert "__trove_key__" in str(e.value)


def test_trove_key_decides_an_objects_key():
    class Model:
        def __init__(self, name):
            self.name = name

        def __trove_key__(self):
            return ("model", self.name)

    assert canonical(Model("a")) == canonical(Model("a")) != canonical(Model("b"))


def test_a_call_is_keyed_the_same_however_its_arguments_are_passed(project):
    engine = trove.Engine(project.root)
    builds = []

    @engine.recipe
    def f(a, b=2, *rest, scale=1.0):
        builds.append((a, b, rest, scale))
        return a

    f(1)
    f(1, 2)
    f(a=1, b=2)
    f(1, scale=1.0)
    assert builds == [(1, 2, (), 1.0)]
    assert f.key(1) == f.key(a=1, b=2) != f.key(1, 3)
    assert [e["args"] for e in engine.status()] == ["(a=1, b=2, rest=(), scale=1.0)"]


def test_a_call_with_an_unsupported_argument_is_a_type_error_and_builds_nothing(project):
    engine = trove.Engine(project.root)
    builds = []

    @engine.recipe
    def f(x):
        builds.append(x)

    with pytest.raises(TypeError, match="__trove_key__"):
        f(object())
    assert builds == []


def test_a_dependency_is_rebuilt_from_its_canonical_arguments_in_a_new_process(project):
    project.write("raw.txt", "a")
    project.write("recipes.py", """
        import dataclasses, trove
        from buildlog import log

        @dataclasses.dataclass(frozen=True)
        class Opts:
            upper: bool

        @trove.recipe
        def parsed(opts, n=1):
            log(f"parsed {opts.upper} {n}")
            with open("raw.txt") as f:
                text = f.read() * n
            return text.upper() if opts.upper else text

        @trove.recipe
        def report():
            log("report")
            return "report of " + parsed(Opts(upper=True), n=2)
    """)
    assert project.call("report")["value"] == "report of AA"
    assert project.builds() == ["report", "parsed True 2"]
    project.write("raw.txt", "b")
    served = project.call("report")
    assert served["value"] == "report of BB"
    assert served["reason"].startswith("built: dependency recipes.parsed")
    assert project.builds() == ["parsed True 2", "report"]


def test_a_dependency_whose_arguments_cannot_be_recovered_rebuilds_its_dependent(project):
    project.write("raw.txt", "a")
    project.write("recipes.py", """
        import numpy as np, trove
        from buildlog import log

        @trove.recipe
        def weighted(w):
            log("weighted")
            with open("raw.txt") as f:
                return f.read() * int(w.sum())

        @trove.recipe
        def report():
            log("report")
            return weighted(np.ones(2))
    """)
    import numpy  # noqa: F401  (the recipe imports it)
    assert project.call("report")["value"] == "aa"
    project.write("raw.txt", "b")
    served = project.call("report")
    assert served == {"value": "bb", "reason": "built: forced"}
    assert project.builds() == ["report", "weighted", "report", "weighted"]

"""What a recipe captures from its enclosing function, as part of its name.

A recipe made by a factory::

    def loader(source):
        @trove.recipe
        def load(day):
            return read(source, day)
        return load

    eu, us = loader("eu"), loader("us")

is two recipes with one qualified name: without more, ``us("mon")`` would be served the
object ``eu("mon")`` built. So the values a recipe's function captures (its closure's
cells) are keyed like arguments and written after its default name:
``app.loader.<locals>.load[source='eu']``. A function, class, module or recipe captured is
named by its qualified name (its code is tracked when it runs), a ``trove.Engine`` as
itself (where objects are kept, not what makes them). A value trove cannot key is named by
its type: silently for plumbing that never makes an object (locks, events, queues, loggers,
files, counters, executors), with a ``RuntimeWarning`` otherwise (recipes made with
different such values would share objects, as before this rule), which names the variable
and the ways out: pass it as an argument, give its type ``__trove_key__``, or leave it out
with ``ignore=`` when it does not change the result. Refusing such recipes outright would
break the many that are made once and capture a lock or a log. With ``name=`` the name
given is the recipe's whole identity. The cells are read once, when the recipe is made.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from typing import Any, Callable, FrozenSet, List, Set, Tuple

from . import _trove


def captured_names(func: Callable[..., Any]) -> FrozenSet[str]:
    """The names ``func`` captures from its enclosing function."""
    code = getattr(func, "__code__", None)
    return frozenset(code.co_freevars) if code is not None else frozenset()


def captured_text(func: Callable[..., Any], recipe: str, ignore: FrozenSet[str]) -> str:
    """``[name=value, ...]`` for the values ``func`` captures (but ``ignore``), or ``""``."""
    return _text(func, recipe, ignore, set())


def _text(func: Callable[..., Any], recipe: str, ignore: FrozenSet[str], seen: Set[int]) -> str:
    code = getattr(func, "__code__", None)
    cells = getattr(func, "__closure__", None)
    if code is None or not cells:
        return ""
    seen.add(id(func))
    names: List[str] = []
    values: List[Any] = []
    for name, cell in zip(code.co_freevars, cells):
        if name in ignore:
            continue
        try:
            value = cell.cell_contents
        except ValueError:
            continue  # not assigned yet: the recipe itself, named before it is bound
        value = _named(value, recipe, seen)
        try:
            _trove.call_text((name,), (value,))
        except TypeError as e:
            value = _unkeyed(recipe, name, value, str(e))
        names.append(name)
        values.append(value)
    if not names:
        return ""
    text = _trove.call_text(tuple(names), tuple(values))
    return "[" + text[1:-1] + "]"


def _plumbing() -> Tuple[type, ...]:
    """Types a build uses but whose value never makes its object: locks, events, queues,
    loggers, files, counters, executors."""
    import concurrent.futures
    import io
    import itertools
    import logging
    import queue
    import threading

    return (
        type(threading.Lock()),
        type(threading.RLock()),
        threading.Event,
        threading.Condition,
        threading.Semaphore,
        threading.Barrier,
        logging.Logger,
        logging.LoggerAdapter,
        queue.Queue,
        io.IOBase,
        itertools.count,
        concurrent.futures.Executor,
    )


def _unkeyed(recipe: str, name: str, value: Any, why: str) -> str:
    """A captured value that cannot be keyed, named by its type; a warning unless it is
    plumbing (a lock, a logger), which never makes an object."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if not (isinstance(value, _plumbing()) or kind.startswith("multiprocessing.")):
        # Point the warning at the code that made the recipe, past this package's frames.
        level, frame = 1, sys._getframe(1)
        while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "trove":
            level += 1
            frame = frame.f_back
        warnings.warn(
            f"recipe {recipe} captures `{name}` ({kind}) from its enclosing function, and "
            f"{why.rstrip('.')}. Recipes made there with different values of it share their "
            f"objects: pass it as an argument, give its type __trove_key__(), or, if it does "
            f"not change the result, leave it out with ignore=({name!r},), which also silences "
            f"this warning.",
            RuntimeWarning,
            stacklevel=level + 1,
        )
    return f"<{kind}>"


def _named(value: Any, recipe: str, seen: Set[int]) -> Any:
    """A captured value as it is keyed: code by its qualified name (and what it captures)."""
    from . import Engine, Recipe  # the package imports this module first

    if isinstance(value, Recipe):
        return f"<recipe {value.name}>"
    if isinstance(value, Engine):
        return "<trove.Engine>"  # where objects are kept, not what makes them
    if inspect.isfunction(value):
        inner = "" if id(value) in seen else _text(value, recipe, frozenset(), seen)
        return f"<function {value.__module__}.{value.__qualname__}{inner}>"
    if inspect.ismethod(value):
        return _named(value.__func__, recipe, seen)
    if inspect.isclass(value) or inspect.isbuiltin(value):
        return f"<{type(value).__name__} {value.__module__}.{value.__qualname__}>"
    if inspect.ismodule(value):
        return f"<module {value.__name__}>"
    return value

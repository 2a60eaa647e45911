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
itself (where objects are kept, not what makes them). A value trove cannot key
is a ``TypeError`` when the recipe is made, naming the variable and the ways out: pass it
as an argument, give its type ``__trove_key__``, leave it out with ``ignore=`` when it does
not change the result (a lock, a logger, a build log), or name the recipe with ``name=``
(then its identity is the name given). The cells are read once, when the recipe is made.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, FrozenSet, List, Set

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
        names.append(name)
        values.append(_named(value, recipe, seen))
    if not names:
        return ""
    try:
        text = _trove.call_text(tuple(names), tuple(values))
    except TypeError:
        for name, value in zip(names, values):
            try:
                _trove.call_text((name,), (value,))
            except TypeError as e:
                raise TypeError(
                    f"recipe {recipe} captures `{name}` ({type(value).__module__}."
                    f"{type(value).__qualname__}) from its enclosing function, and two recipes "
                    f"made there with different values must not share their objects: {str(e).rstrip('.')}. "
                    f"Pass it as an argument, give its type __trove_key__(), leave it out with "
                    f"ignore=({name!r},) if it does not change the result, or name each "
                    f"recipe with name=..."
                ) from None
        raise
    return "[" + text[1:-1] + "]"


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

"""trove: build, cache and serve expensive immutable objects like a build system.

A recipe is a function whose result is expensive. Calling it serves the object from
memory (the same object to every caller), from the store on disk, or builds it --
exactly once, however many threads and processes ask at once. While it builds, trove
records everything it touched: the code that ran (source files by their AST, installed
distributions by version), the modules it imported, the files it read or looked for, the
directories it listed, the environment variables it read. The object is served again only
while all of that is unchanged::

    import trove

    @trove.recipe(version=1, check=lambda t: None if len(t) else "rows > 0", max_age="30d")
    def table(currency: str) -> list:
        with open("data/prices.csv") as f:          # tracked
            ...

    rows = table("EUR")                              # built, then served
    rows, reason = table.get_explained("EUR")        # "hit memory"
    table.explain("EUR")                             # "would hit memory"

The engine, the store and its locks are trove's Rust engine: a Python process, the
``trove`` command line and Rust programs share one store.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import inspect
import os
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import _args, _captured, _code, _hooks, _objects, _trove
from ._trove import CycleError, TroveError

__all__ = [
    "Engine",
    "Recipe",
    "TroveError",
    "CycleError",
    "ArgumentsUnknown",
    "recipe",
    "default_engine",
    "track",
    "volatile",
    "canonical",
]

Duration = Union[None, int, float, str, datetime.timedelta]


class ArgumentsUnknown(TroveError):
    """A stored object's dependency must be rebuilt, but its arguments are not known in
    this process (they cannot be recovered from their canonical text). The object that
    depends on it is rebuilt instead, which calls the dependency with real arguments."""


def _seconds(value: Duration, what: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        return _trove.parse_duration(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise TypeError(f"{what} is seconds, a datetime.timedelta or a string such as '30d', not {value!r}")


def track(path: Union[str, bytes, "os.PathLike[str]"]) -> None:
    """Records ``path`` (or its absence) as an input of the build running on this thread."""
    _trove.track(path)


def volatile(name: str, ttl: Duration) -> None:
    """Declares a volatile source (a URL, a clock): the object being built expires ``ttl``
    after it was built, whatever else holds."""
    seconds = _seconds(ttl, "ttl")
    if seconds is None:
        raise TypeError("trove.volatile() needs a ttl")
    _trove.volatile(name, seconds)


def canonical(value: Any) -> str:
    """The canonical text ``value`` is keyed by (a ``TypeError`` says why it cannot be)."""
    return _trove.canonical_text(value)


_generation = 0
_leaked: List[Any] = []
# The engines alive, weakly: an engine its program drops (a notebook cell run again, a
# test) is freed with its memory tier; its Rust side finishes its uploads when it goes.
_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _after_fork() -> None:
    # A forked child must not use its parent's engine (its SQLite connections and locks
    # belong to the parent): every engine reopens on first use in the child.
    global _generation
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _ignore_paths() -> None:
    stores = [str(e.store_path) for e in _engines]
    _trove.set_ignored(_code.ignored_prefixes() + stores + ["/proc", "/sys", "/dev"])


@atexit.register
def _finish_uploads() -> None:
    # Uploads to the shared tier run on threads of their own after each build; the
    # interpreter's exit would cut them short.
    for engine in list(_engines):
        engine._rust_engine.finish_uploads()


class Engine:
    """An engine over one store.

    ``Engine()`` finds ``trove.ron`` in the working directory or its parents, else keeps
    its store in ``./.trove``. ``Engine("path/to/trove.ron")`` uses that configuration;
    ``Engine("some/dir")`` that directory's ``trove.ron`` or ``.trove``;
    ``Engine(store=".cache")`` puts the store there. Use one engine per store per process,
    so every object exists once in memory.
    """

    def __init__(
        self,
        path: Union[None, str, "os.PathLike[str]"] = None,
        *,
        store: Union[None, str, "os.PathLike[str]"] = None,
        memory_limit: Optional[int] = None,
    ) -> None:
        self._config: Optional[str] = None
        root = os.getcwd()
        if path is None:
            self._config = _find_config(root)
        else:
            p = os.path.abspath(os.fspath(path))
            if os.path.isdir(p):
                root = p
                candidate = os.path.join(p, "trove.ron")
                self._config = candidate if os.path.isfile(candidate) else None
            else:
                self._config = p
                root = os.path.dirname(p)
        self._root = root
        self._store = os.fspath(store) if store is not None else None
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        # Every recipe of the engine is registered with it as soon as both exist, so a
        # stored object that depends on another recipe validates in a fresh process.
        self._recipes: List[Recipe] = []
        self._open()
        _engines.add(self)
        _ignore_paths()

    def _open(self) -> None:
        self._rust_engine = _trove.Engine(
            self._config, self._root, self._store, self._memory_limit
        )
        self._generation = _generation
        for r in self._recipes:
            r._handle_for(self._rust_engine)

    def _adopt(self, r: "Recipe") -> "Recipe":
        self._recipes.append(r)
        r._handle_for(self._rust())
        return r

    def _rust(self) -> Any:
        if self._generation != _generation:
            with self._lock:
                if self._generation != _generation:
                    _leaked.append(self._rust_engine)  # never dropped in the child
                    self._open()
        return self._rust_engine

    @property
    def store_path(self) -> str:
        """The store's directory."""
        return str(self._rust_engine.store_path)

    def recipe(
        self,
        func: Optional[Callable[..., Any]] = None,
        *,
        version: int = 1,
        check: Optional[Callable[[Any], Any]] = None,
        max_age: Duration = None,
        name: Optional[str] = None,
        ignore: Tuple[str, ...] = (),
        mmap: bool = False,
    ) -> Any:
        """Makes ``func`` a recipe of this engine (a decorator, with or without arguments).

        - ``version``: bump it when the code's meaning changes in a way trove cannot see;
        - ``check(obj)``: an invariant checked before an object is served from disk:
          ``None`` or ``True`` passes, a string (or ``False``) is the failure, and the
          stored object is quarantined and rebuilt;
        - ``max_age``: seconds, a ``timedelta`` or ``"30d"``: older objects are rebuilt;
        - ``name``: the recipe's name in the store (default ``module.qualname``, followed
          for a function made inside another by the values it captures, keyed like
          arguments: ``app.loader.<locals>.load[source='eu']``);
        - ``ignore``: parameters left out of the key (``("self",)`` for a method whose
          instance does not change the object), and captured variables left out of the
          name (a lock or a logger the function uses);
        - ``mmap``: large buffers of the object (numpy arrays of 64 KiB and more) are
          stored as files of their own and served zero-copy from a read-only memory map
          (as joblib's ``mmap_mode="r"``): a disk hit reads no array data, and the arrays
          every caller gets are read-only. The buffer files are verified before they are
          mapped; they stay on this machine (the shared tier carries the rest, and a
          machine without them rebuilds).
        """

        def make(f: Callable[..., Any]) -> Recipe:
            return self._adopt(
                Recipe(lambda: self, f, version=version, check=check, max_age=max_age, name=name, ignore=ignore, mmap=mmap)
            )

        return make(func) if func is not None else make

    def set_counter(self, name: str, value: int, recipe: Optional[str] = None) -> None:
        """Sets a version counter (as ``versions`` in trove.ron): objects built under
        another value of a counter that covers them are rebuilt."""
        self._rust().set_counter(name, value, recipe)

    def stats(self) -> Dict[str, int]:
        """The engine's counters so far: memory hits (``watched_hits`` and ``fast_hits``
        of them under :meth:`watch`), disk hits, builds, ``waits`` (requests that joined
        another's build), ``files_checked``, ``absences_vouched`` (absent paths a
        directory's unchanged stamp answered), ``dirs_answered``, ``files_hashed`` (by
        builds); with a shared tier (``shared`` in trove.ron), its hits, outages, refused
        records, uploads and failed uploads (``shared_*``)."""
        return dict(self._rust().stats())

    def status(self) -> List[Dict[str, Any]]:
        """The stored objects: recipe, args, key, residency, size, age, hits, reason."""
        return list(self._rust().status())

    def gc(self, dry_run: bool = False, stale: bool = False, max_size: Optional[int] = None) -> Dict[str, Any]:
        """Removes what can never be served again (``stale=True``: also what would be
        rebuilt now); each removal comes with its reason. ``dry_run`` removes nothing.
        Buffer files of ``mmap=True`` objects that no stored object names go too (an
        array mapped from one stays valid: the mapping holds the file)."""
        rust = self._rust()
        report = dict(rust.gc(dry_run, stale, max_size))
        swept = _objects.sweep_buffers(str(rust.store_path), str(rust.buffers_path), dry_run)
        report["removals"] = list(report["removals"]) + swept
        report["bytes"] += sum(r["bytes"] for r in swept)
        return report

    @contextlib.contextmanager
    def watch(self) -> Iterator["Engine"]:
        """While inside, a watcher on the project lets memory hits skip file checks."""
        self._rust().start_watch()
        try:
            yield self
        finally:
            self._rust().stop_watch()

    def __repr__(self) -> str:
        return f"trove.Engine(store={self.store_path!r})"


def _find_config(start: str) -> Optional[str]:
    d = start
    while True:
        candidate = os.path.join(d, "trove.ron")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


_default: Optional[Engine] = None
_default_lock = threading.Lock()
_default_recipes: "List[Recipe]" = []


def default_engine() -> Engine:
    """The engine ``@trove.recipe`` uses, opened on first use (see :class:`Engine`)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                engine = Engine()
                for r in _default_recipes:
                    engine._adopt(r)
                _default = engine
    return _default


def recipe(
    func: Optional[Callable[..., Any]] = None,
    *,
    version: int = 1,
    check: Optional[Callable[[Any], Any]] = None,
    max_age: Duration = None,
    name: Optional[str] = None,
    ignore: Tuple[str, ...] = (),
    mmap: bool = False,
) -> Any:
    """:meth:`Engine.recipe` on the default engine."""

    def make(f: Callable[..., Any]) -> "Recipe":
        r = Recipe(default_engine, f, version=version, check=check, max_age=max_age, name=name, ignore=ignore, mmap=mmap)
        with _default_lock:
            _default_recipes.append(r)
            engine = _default
        if engine is not None:
            engine._adopt(r)
        return r

    return make(func) if func is not None else make


_local = threading.local()


class Recipe:
    """A function whose results trove serves. Call it like the function; see
    :meth:`get_explained`, :meth:`explain`, :meth:`residency`, :meth:`refresh`."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        func: Callable[..., Any],
        *,
        version: int,
        check: Optional[Callable[[Any], Any]],
        max_age: Duration,
        name: Optional[str],
        ignore: Tuple[str, ...],
        mmap: bool = False,
    ) -> None:
        self._static = isinstance(func, staticmethod)
        self._mmap = bool(mmap)
        if self._static:
            func = func.__func__  # type: ignore[union-attr]
        functools.update_wrapper(self, func)
        self._func = func
        self._engine = engine
        self._version = int(version)
        self._check = check
        self._max_age = _seconds(max_age, "max_age")
        self._sig = inspect.signature(func)
        params = list(self._sig.parameters.values())
        self._names = tuple(p.name for p in params)
        self._plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        captured = _captured.captured_names(func)
        default = f"{func.__module__}.{func.__qualname__}"
        unknown = set(ignore) - set(self._names) - captured
        if unknown:
            raise TypeError(f"ignore names no parameter or captured variable of {name or default}: {sorted(unknown)}")
        # A factory's recipes differ by what they capture (see _captured.py).
        self.name = name or default + _captured.captured_text(func, default, frozenset(ignore) & captured)
        self._ignore = frozenset(ignore) - captured
        self._handle: Any = None
        self._handle_of: Any = None
        # (generation, handle.call) once a handle exists, for calls by position only.
        self._fast: Any = None
        self._nargs = len(self._names) if self._plain and not self._ignore else -1

    # The handle is made on first use: the default engine opens then.
    def _rust(self) -> Any:
        return self._handle_for(self._engine()._rust())

    def _handle_for(self, rust: Any) -> Any:
        if self._handle_of is not rust:
            names = self._names if self._nargs >= 0 else None
            self._handle = rust.recipe(
                self.name, self._version, self, self._max_age, self._check is not None, None, self._mmap, names
            )
            self._handle_of = rust
            self._fast = (_generation, self._handle.call) if names is not None else None
        return self._handle

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None or self._static:
            return self
        return _Bound(self, instance)

    def _text(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        if not kwargs and self._plain and len(args) == len(self._names):
            names, values = self._names, args
        else:
            bound = self._sig.bind(*args, **kwargs)
            bound.apply_defaults()
            names, values = tuple(bound.arguments), tuple(bound.arguments.values())
        if self._ignore:
            kept = [(n, v) for n, v in zip(names, values) if n not in self._ignore]
            names, values = tuple(n for n, _ in kept), tuple(v for _, v in kept)
        return _trove.call_text(names, values)

    def _serve(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], refresh: bool = False) -> Tuple[Any, str]:
        text = self._text(args, kwargs)
        inflight = getattr(_local, "inflight", None)
        if inflight is None:
            inflight = _local.inflight = {}
        slot = (self.name, text)
        previous = inflight.get(slot)
        inflight[slot] = (args, kwargs)
        try:
            handle = self._rust()
            if refresh:
                return handle.refresh(text)
            try:
                return handle.get(text)
            except ArgumentsUnknown as e:
                if e.args and e.args[0] == self.name:
                    raise
                # A dependency of the stored object cannot be rebuilt from its text:
                # this object is built anew, calling it with real arguments.
                return handle.refresh(text)
        finally:
            if previous is None:
                inflight.pop(slot, None)
            else:
                inflight[slot] = previous

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fast = self._fast
        if fast is not None and not kwargs and len(args) == self._nargs and fast[0] == _generation:
            # One call into the extension: key, serve or build, the object.
            try:
                return fast[1](args)
            except ArgumentsUnknown as e:
                if e.args and e.args[0] == self.name:
                    raise
        return self._serve(args, kwargs)[0]

    def get_explained(self, *args: Any, **kwargs: Any) -> Tuple[Any, str]:
        """The object and why: ``hit memory``, ``hit disk``, ``built: helper.py (py-ast)
        changed (blake3 1f3a.. -> 9c2e..)``."""
        return self._serve(args, kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Builds anew and replaces what is stored (``use_cache=False``)."""
        return self._serve(args, kwargs, refresh=True)[0]

    def explain(self, *args: Any, **kwargs: Any) -> str:
        """What a call would do, building nothing: ``would build: data.csv changed (..)``."""
        return self._rust().explain(self._text(args, kwargs))

    def residency(self, *args: Any, **kwargs: Any) -> str:
        """``absent``, ``on_disk``, ``in_memory`` or ``stale: <why>``."""
        return self._rust().residency(self._text(args, kwargs))

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The object's key (hex)."""
        return self._rust().key(self._text(args, kwargs))

    # Called by the extension.
    def _trove_build(self, text: str, args: Optional[Tuple[Any, ...]] = None) -> Tuple[bytes, Any]:
        inflight = getattr(_local, "inflight", None) or {}
        call = (args, {}) if args is not None else inflight.get((self.name, text))
        if call is None:
            call = _args.call_from_text(text, self._func, self._ignore)
        if call is None:
            raise ArgumentsUnknown(
                self.name,
                f"recipe {self.name}: the arguments {text} are not known in this process",
            )
        result = self._func(*call[0], **call[1])
        try:
            if self._mmap:
                buffers = str(self._rust_engine_for_build().buffers_path)
                data = _objects.dumps_mapped(result, buffers)
                # Every caller, the builder included, gets the mapped, read-only object.
                result = _objects.loads(data, buffers, verify=False)
            else:
                data = _objects.dumps(result)
        except OSError:
            raise  # writing a buffer file: the store's problem, said as it is
        except Exception as e:
            raise TypeError(
                f"recipe {self.name} returned an object that cannot be pickled "
                f"({type(result).__module__}.{type(result).__qualname__}): {e}"
            ) from e
        return data, result

    def _rust_engine_for_build(self) -> Any:
        return self._engine()._rust()

    def _trove_check(self, obj: Any) -> Optional[str]:
        if self._check is None:
            return None
        verdict = self._check(obj)
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return "check returned False"
        return str(verdict)

    def __repr__(self) -> str:
        return f"<trove recipe {self.name} v{self._version}>"


class _Bound:
    """A recipe method bound to an instance: the instance is its first argument."""

    def __init__(self, recipe: Recipe, instance: Any) -> None:
        self._recipe = recipe
        self._instance = instance
        functools.update_wrapper(self, recipe._func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._recipe(self._instance, *args, **kwargs)

    def get_explained(self, *args: Any, **kwargs: Any) -> Tuple[Any, str]:
        return self._recipe.get_explained(self._instance, *args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        return self._recipe.refresh(self._instance, *args, **kwargs)

    def explain(self, *args: Any, **kwargs: Any) -> str:
        return self._recipe.explain(self._instance, *args, **kwargs)

    def residency(self, *args: Any, **kwargs: Any) -> str:
        return self._recipe.residency(self._instance, *args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        return self._recipe.key(self._instance, *args, **kwargs)


_hooks.install()

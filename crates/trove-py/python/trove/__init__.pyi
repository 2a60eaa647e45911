import datetime
import os
from typing import Any, Callable, ContextManager, Dict, Generic, List, Optional, Tuple, TypeVar, Union, overload

from typing_extensions import ParamSpec

P = ParamSpec("P")
R = TypeVar("R")

Duration = Union[None, int, float, str, datetime.timedelta]
StrPath = Union[str, "os.PathLike[str]"]

class TroveError(Exception):
    """An error of trove itself (the store, the configuration, a cycle), not of a recipe."""

class CycleError(TroveError):
    """A recipe asked, directly or not, for the object it is itself building."""

class ArgumentsUnknown(TroveError):
    """A dependency's arguments cannot be recovered in this process (its dependent is rebuilt)."""

class Recipe(Generic[P, R]):
    """A function whose results trove serves: call it like the function."""

    name: str
    __wrapped__: Callable[P, R]
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def get_explained(self, *args: P.args, **kwargs: P.kwargs) -> Tuple[R, str]:
        """The object and why: ``hit memory``, ``hit disk``, ``built: <reason>``."""
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Builds anew and replaces what is stored."""
    def explain(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """What a call would do, building nothing: ``would build: ...``."""
    def residency(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """``absent``, ``on_disk``, ``in_memory`` or ``stale: <why>``."""
    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The object's key (hex)."""
    def __get__(self, instance: Any, owner: Any = ...) -> Any: ...

class Engine:
    """An engine over one store (``trove.ron`` found upward from the cwd, else ``./.trove``)."""

    def __init__(
        self, path: Optional[StrPath] = ..., *, store: Optional[StrPath] = ..., memory_limit: Optional[int] = ...
    ) -> None: ...
    @property
    def store_path(self) -> str: ...
    @overload
    def recipe(self, func: Callable[P, R]) -> Recipe[P, R]: ...
    @overload
    def recipe(
        self,
        *,
        version: int = ...,
        check: Optional[Callable[[Any], Any]] = ...,
        max_age: Duration = ...,
        name: Optional[str] = ...,
        ignore: Tuple[str, ...] = ...,
        mmap: bool = ...,
    ) -> Callable[[Callable[P, R]], Recipe[P, R]]: ...
    def set_counter(self, name: str, value: int, recipe: Optional[str] = ...) -> None: ...
    def stats(self) -> Dict[str, int]: ...
    def status(self) -> List[Dict[str, Any]]: ...
    def gc(self, dry_run: bool = ..., stale: bool = ..., max_size: Optional[int] = ...) -> Dict[str, Any]: ...
    def watch(self) -> ContextManager["Engine"]: ...

@overload
def recipe(func: Callable[P, R]) -> Recipe[P, R]: ...
@overload
def recipe(
    *,
    version: int = ...,
    check: Optional[Callable[[Any], Any]] = ...,
    max_age: Duration = ...,
    name: Optional[str] = ...,
    ignore: Tuple[str, ...] = ...,
    mmap: bool = ...,
) -> Callable[[Callable[P, R]], Recipe[P, R]]: ...
def default_engine() -> Engine: ...
def track(path: Union[str, bytes, "os.PathLike[str]"]) -> None:
    """Records ``path`` (or its absence) as an input of the running build."""
def volatile(name: str, ttl: Duration) -> None:
    """The object being built expires ``ttl`` after it was built."""
def canonical(value: Any) -> str:
    """The canonical text ``value`` is keyed by."""

"""Code as an input: which source files and modules a build's code came from, and how
each is fingerprinted (called by the extension when a build ends, and to validate).

- a ``.py`` file of the project: ``py-ast``, the blake3 of ``ast.dump`` of the file, so
  comments, blank lines and formatting rebuild nothing while any code change does;
- a file of an installed distribution (site-packages): ``py-dist``, its name and version;
- the standard library (frozen modules included): ``py-dist`` ``(stdlib)``, the
  interpreter's version;
- an extension module (``.so``) or a module without source: the file, by content.

trove's own package is none of the recipe's code and is left out.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import site
import sys
import sysconfig
import time
import warnings
from typing import Any, Dict, List, Optional, Set, Tuple

from . import _trove

STDLIB = "(stdlib)"
# Modules imported before trove were loaded before this moment.
IMPORTED_NS = time.time_ns()
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _dirs() -> Tuple[List[str], List[str]]:
    sites: Set[str] = set()
    try:
        sites.update(site.getsitepackages())
    except AttributeError:  # an old virtualenv's site module
        pass
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        sites.add(user)
    paths = sysconfig.get_paths()
    sites.update(p for p in (paths.get("purelib"), paths.get("platlib")) if p)
    stdlib = {p for p in (paths.get("stdlib"), paths.get("platstdlib")) if p}
    norm = lambda ps: sorted({os.path.realpath(p).rstrip(os.sep) + os.sep for p in ps}, key=len, reverse=True)
    return norm(sites), norm(stdlib)


SITE_DIRS, STDLIB_DIRS = _dirs()
_top_level: Optional[Dict[str, List[str]]] = None


def ignored_prefixes() -> List[str]:
    """Where files are never data inputs: installed code and the standard library."""
    return [p.rstrip(os.sep) for p in SITE_DIRS + STDLIB_DIRS]


def _packages() -> Dict[str, List[str]]:
    global _top_level
    if _top_level is None:
        import importlib.metadata as md

        if hasattr(md, "packages_distributions"):
            _top_level = dict(md.packages_distributions())
        else:  # Python 3.9
            _top_level = {}
            for dist in md.distributions():
                name = dist.metadata["Name"]
                tops = (dist.read_text("top_level.txt") or "").split()
                if not tops:
                    tops = {str(f).split("/")[0].split(".")[0] for f in (dist.files or [])}
                for top in tops:
                    _top_level.setdefault(top, []).append(name)
    return _top_level


def _dist_of(path: str, site_dir: str) -> Optional[str]:
    top = path[len(site_dir) :].split(os.sep)[0]
    name = top.split(".")[0] if top.endswith((".py", ".so", ".pyd")) or ".cpython-" in top else top
    dists = _packages().get(name)
    return dists[0] if dists else None


def classify(file: str, externals: Set[Tuple[str, str]], contents: Set[str]) -> None:
    if file.startswith("<"):
        if file.startswith("<frozen"):
            externals.add(("py-dist", STDLIB))
        return  # <string>, <stdin>: code with no file
    path = os.path.realpath(file)
    if path.startswith(_HERE):
        return
    for site_dir in SITE_DIRS:
        if path.startswith(site_dir):
            dist = _dist_of(path, site_dir)
            if dist is not None:
                externals.add(("py-dist", dist))
                return
            break
    else:
        for std in STDLIB_DIRS:
            if path.startswith(std):
                externals.add(("py-dist", STDLIB))
                return
    if path.endswith(".py"):
        externals.add(("py-ast", path))
    elif os.path.isfile(path):
        contents.add(path)


# module name -> (the path its loader read, the digest of the source bytes it was last
# compiled from in this process) (``trove._hooks`` wraps ``SourceFileLoader.source_to_code``).
_compiled: Dict[str, Tuple[str, bytes]] = {}
# File times lag the clock by up to one tick of the kernel's coarse clock (4 ms at 250 Hz,
# 10 ms at 100 Hz): a file stamped less than this before its module's import began may
# have been written after it.
_TICK_NS = 10_000_000


def _source_digest(data: Any) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(bytes(data), digest_size=16).digest()


def compiled(module: Optional[str], path: Any, data: Any) -> None:
    """The loader of ``module`` compiles ``data``, the source it read from ``path``. (No
    system call here: this may run inside a build, where a ``stat`` is a probe.)"""
    if module and isinstance(path, str):
        _compiled[module] = (path, _source_digest(data))


def _compiled_from(module: str, path: str) -> Optional[bytes]:
    """The digest of the source ``module`` was compiled from, if it was read from ``path``."""
    known = _compiled.get(module)
    if known is None:
        return None
    read, digest = known
    try:
        return digest if read == path or os.path.realpath(read) == path else None
    except (OSError, ValueError):
        return None


def _not_what_ran(path: str, modules: List[str]) -> bool:
    """Whether the code that ran may not be this source file's.

    For each module loaded from it: when its source was compiled in this process, the
    bytes it was compiled from are known, and the file is compared with them (exact:
    no clock is involved). That comparison is needed only when the file was modified at
    or after the import began, or less than a clock tick before it (file times lag);
    a file modified earlier is what the import read. A module loaded from a cached
    bytecode file (or before trove was imported) has no known source: then a file
    modified after the import began is not what ran, and neither is one Python may have
    taken for its cached bytecode (same size, and an edit in the same second as the one
    the cache was made from: pyc files keep whole seconds)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    current: Optional[bytes] = None
    for module in modules or [None]:
        known = _compiled_from(module, path) if module else None
        loaded = _trove.loaded_at(module) if module else None
        if st.st_mtime_ns >= (loaded or IMPORTED_NS) - _TICK_NS:
            if known is None:
                return True
            if current is None:
                try:
                    with open(path, "rb") as f:
                        current = _source_digest(f.read())
                except OSError:
                    return True
            if known != current:
                return True
        elif known is None and _pyc_taken_for(path, st):
            return True
    return False


def _pyc_taken_for(path: str, st: os.stat_result) -> bool:
    try:
        pyc = importlib.util.cache_from_source(path)
        with open(pyc, "rb") as f:
            header = f.read(16)
        pyc_written = os.stat(pyc).st_mtime_ns
    except (OSError, ValueError, NotImplementedError):
        return False
    if len(header) < 16 or int.from_bytes(header[4:8], "little") != 0:
        return False  # a hash-based pyc is checked against the source's content
    same_second = int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
    same_size = int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF
    return same_second and same_size and st.st_mtime_ns > pyc_written


def code_inputs(
    files: List[str], modules: List[str], target: Any, profiled: bool
) -> Tuple[List[Tuple[str, str]], List[str], Optional[str]]:
    """The inputs of the code a build ran (``files``) and imported (``modules``), and a
    source file whose code may not be what ran (then the object is not stored)."""
    externals: Set[Tuple[str, str]] = set()
    contents: Set[str] = set()
    func = getattr(target, "__wrapped__", None)
    own = getattr(getattr(func, "__code__", None), "co_filename", None)
    if own:
        classify(own, externals, contents)
    for file in files:
        classify(file, externals, contents)
    for name in modules:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:
            classify(file, externals, contents)
    sources = [name for kind, name in externals if kind == "py-ast"]
    unstable = None
    if sources:
        by_file: Dict[str, List[str]] = {}
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if isinstance(file, str):
                by_file.setdefault(os.path.realpath(file), []).append(name)
        for path in sources:
            if _not_what_ran(path, by_file.get(path, [])):
                unstable = path
                warnings.warn(
                    f"trove: {path} changed after its module was loaded, so the code that ran "
                    "is not the file's: the object is returned but not stored. Restart the "
                    "process (or importlib.reload the module) to build with the edited code.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
    return sorted(externals), sorted(contents), unstable


def ast_text(source: bytes, path: str) -> Optional[str]:
    """What a source file's code is, without its comments and formatting."""
    try:
        return ast.dump(ast.parse(source, filename=path))
    except (SyntaxError, ValueError):
        return None


def dist_version(name: str) -> Optional[str]:
    if name == STDLIB:
        return sys.version
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None

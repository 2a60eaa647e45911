"""Installs the tracking hooks, once per process, when ``trove`` is imported.

CPython's audit hook sees ``open``, ``os.listdir``/``os.scandir``, ``sqlite3.connect``,
``socket.connect``, ``subprocess.Popen`` and ``import`` (handled in the extension). Where
CPython has no hook, a thin wrapper reports to the build running on the thread (and costs
one call of the extension otherwise):

- ``os.stat`` and ``os.lstat`` (so ``os.path.exists``/``isfile``/``isdir``, ``pathlib``):
  a probed path is an input, present or absent;
- ``os.environ`` reads (``os.getenv``, ``environ[...]``, ``.get``, ``in``): the variable's
  value or absence, through ``os._Environ.__getitem__``;
- ``threading.Thread.start`` and ``ThreadPoolExecutor.submit``: a thread or task started by
  a build reports to that build.

A finder first on ``sys.meta_path`` notes when each import begins (it finds nothing
itself): ``importlib.import_module`` raises no ``import`` audit event. And
``SourceFileLoader.source_to_code`` reports the source bytes each module is compiled
from. A source file that changed after its module was loaded is not the code that ran
(``trove._code``): the time an import began tells for files modified well before it, the
bytes compiled for files modified around or after it.
"""

from __future__ import annotations

import functools
import os
import sys
import threading

from . import _trove

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    sys.addaudithook(_trove.audit)
    sys.meta_path.insert(0, _ImportTimes())
    _wrap_loader()
    _wrap_stat()
    _wrap_environ()
    _wrap_threads()


class _ImportTimes:
    """Notes the moment each import begins; finds nothing (the next finder does)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        _trove.importing(name)
        return None


def _wrap_loader() -> None:
    from importlib.machinery import SourceFileLoader

    from . import _code

    original = SourceFileLoader.source_to_code

    @functools.wraps(original)
    def source_to_code(self, data, path, *args, **kwargs):
        code = original(self, data, path, *args, **kwargs)
        _code.compiled(getattr(self, "name", None), path, data)
        return code

    SourceFileLoader.source_to_code = source_to_code


def _wrap_stat() -> None:
    building, probe = _trove.building, _trove.probe
    for name in ("stat", "lstat"):
        original = getattr(os, name)

        @functools.wraps(original)
        def wrapper(path, *args, _original=original, **kwargs):
            try:
                return _original(path, *args, **kwargs)
            finally:
                if building() and not isinstance(path, int) and kwargs.get("dir_fd") is None:
                    probe(path)

        setattr(os, name, wrapper)
        # Code that asks whether os.stat supports dir_fd (shutil.rmtree) still finds it.
        for support in ("supports_dir_fd", "supports_fd", "supports_follow_symlinks"):
            group = getattr(os, support, None)
            if group is not None and original in group:
                group.add(wrapper)


def _wrap_environ() -> None:
    building, env_read = _trove.building, _trove.env_read
    original = os._Environ.__getitem__

    def __getitem__(self, key):
        if building():
            env_read(key)
        return original(self, key)

    os._Environ.__getitem__ = __getitem__


def _in_context(ctx, fn):
    def run(*args, **kwargs):
        _trove.enter_thread(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            _trove.exit_thread()

    return run


def _wrap_threads() -> None:
    current = _trove.current_context
    start = threading.Thread.start

    @functools.wraps(start)
    def thread_start(self):
        ctx = current()
        if ctx is not None:
            self.run = _in_context(ctx, self.run)
        return start(self)

    threading.Thread.start = thread_start

    from concurrent.futures import thread as futures_thread

    submit = futures_thread.ThreadPoolExecutor.submit

    @functools.wraps(submit)
    def pool_submit(self, fn, /, *args, **kwargs):
        ctx = current()
        if ctx is not None:
            fn = _in_context(ctx, fn)
        return submit(self, fn, *args, **kwargs)

    futures_thread.ThreadPoolExecutor.submit = pool_submit

"""Fixtures: a project directory with its own store, a build log, and child processes.

Edits to code are tested across processes, as a person works: edit, run again. A module
edited while a process runs keeps running its old code, so an in-process edit would not
say anything about what trove tracks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, List

import pytest

DRIVER = '''
import json, sys
import recipes
name, args = sys.argv[1], json.loads(sys.argv[2])
target = recipes
for part in name.split("."):
    target = getattr(target, part)
value, reason = target.get_explained(*args)
print(json.dumps({"value": value, "reason": reason}))
'''

BUILDLOG = '''
import os
def log(entry):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build.log"), "a") as f:
        f.write(entry + "\\n")
'''


class Project:
    """A directory with recipes, data, a store (``.trove``) and a build log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.write("driver.py", DRIVER)
        self.write("buildlog.py", BUILDLOG)

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    def builds(self) -> List[str]:
        """The builds logged since the last call (emptying the log)."""
        log = self.root / "build.log"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        log.unlink()
        return lines

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROVE_TEST_")}
        env["PYTHONPATH"] = str(self.root)
        # Bytecode caches keep whole seconds: a test edits faster than a person does.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(extra)
        return env

    def call(self, name: str, *args: Any, **env: str) -> dict:
        """Runs ``recipes.<name>(*args)`` in a new process: ``{"value", "reason"}``."""
        out = subprocess.run(
            [sys.executable, "driver.py", name, json.dumps(list(args))],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess:
        path = self.write("script.py", script)
        return subprocess.run(
            [sys.executable, str(path)],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)

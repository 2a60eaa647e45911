"""Several processes share one store: they build each object once, and the `trove`
command line sees what Python built."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = """
import time, trove
from buildlog import log

@trove.recipe
def slow(n):
    log(f"slow {n} {__import__('os').getpid()}")
    time.sleep(0.5)
    return n * 2
"""


def _ask(root: str, barrier, out) -> None:
    os.chdir(root)
    sys.path.insert(0, root)
    import recipes

    barrier.wait()
    value, reason = recipes.slow.get_explained(21)
    out.put((value, reason))


def test_four_processes_asking_at_once_build_once(project):
    project.write("recipes.py", RECIPES)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [ctx.Process(target=_ask, args=(str(project.root), barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    assert [v for v, _ in results] == [42] * 4
    reasons = sorted(r for _, r in results)
    assert reasons == ["built: no entry", "hit disk", "hit disk", "hit disk"]
    assert len(project.builds()) == 1


def _cli() -> Path:
    """The `trove` binary: TROVE_CLI (test.sh builds it), else target/debug/trove."""
    given = os.environ.get("TROVE_CLI")
    if given:
        return Path(given)
    root = Path(__file__).resolve().parents[3]
    return root / "target" / "debug" / "trove"


def test_the_command_line_sees_and_keeps_what_python_stored(project):
    cli = _cli()
    if not cli.exists():
        cargo = shutil.which("cargo")
        assert cargo, "neither TROVE_CLI, target/debug/trove nor cargo is available"
        subprocess.run([cargo, "build", "-q", "-p", "trove-cli"], cwd=cli.parents[2], check=True)
    project.write("recipes.py", RECIPES.replace("time.sleep(0.5)", "pass"))
    assert project.call("slow", 5)["value"] == 10
    status = subprocess.run([str(cli), "status", "--json"], cwd=project.root, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    [entry] = json.loads(status.stdout)
    assert entry["recipe"] == "recipes.slow"
    assert "n=5" in json.dumps(entry)
    gc = subprocess.run([str(cli), "gc"], cwd=project.root, capture_output=True, text=True)
    assert gc.returncode == 0, gc.stderr
    verify = subprocess.run([str(cli), "verify"], cwd=project.root, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # Still served from the store after the CLI's gc and verify.
    assert project.call("slow", 5)["reason"] == "hit disk"
    assert len(project.builds()) == 1

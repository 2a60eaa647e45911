"""The examples in examples/python run as their READMEs say: each on a copy, in fresh
processes, with the build log (the ``building ...`` lines on stderr) asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


class Example:
    def __init__(self, name: str, tmp_path: Path) -> None:
        self.root = tmp_path / name
        shutil.copytree(EXAMPLES / name, self.root, ignore=shutil.ignore_patterns(".trove", "trove.local.ron", "__pycache__"))

    def run(self, *args: str) -> Tuple[List[str], List[str]]:
        """(stdout lines, build log) of ``python <args>`` in the example's directory."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROVE_")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # pyc files keep whole seconds; tests edit faster
        out = subprocess.run(
            [sys.executable, *args], cwd=self.root, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        builds = [line for line in out.stderr.splitlines() if line.startswith("building ")]
        return out.stdout.splitlines(), builds

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new, 1))


def reason(lines: List[str]) -> str:
    return next(line for line in lines if line.startswith("reason: ")).removeprefix("reason: ")


def test_the_xfactory_example(tmp_path):
    ex = Example("xfactory", tmp_path)
    get = ("main.py", "get", "linear", "2")

    out, builds = ex.run(*get)
    assert reason(out) == "built: no entry" and "residency before: absent" in out
    assert builds == ["building X('linear', 2.0)"]
    out, builds = ex.run(*get)
    assert (reason(out), builds) == ("hit disk", [])
    assert "residency before: on_disk" in out

    # Eight threads asking at once: one build, one object.
    out, builds = ex.run("main.py", "threads", "ranked", "1.5", "8")
    assert out == ["8 threads, 1 object(s)"]
    assert builds == ["building X('ranked', 1.5)"]

    # The plugin imported by name: a comment is not code, an edit is.
    ex.edit("plugins/linear.py", "return [scale * p for p in prices]", "return [scale * p for p in prices]  # tuned")
    out, builds = ex.run(*get)
    assert (reason(out), builds) == ("hit disk", [])
    ex.edit("plugins/linear.py", "scale * p for", "scale * p * 2 for")
    out, builds = ex.run(*get)
    assert reason(out).startswith("built: plugins/linear.py (py-ast) changed (blake3 ")
    assert out[0] == "scores [400.0, 406.0, 396.0, 409.0]"
    assert builds == ["building X('linear', 2.0)"]

    # The helper module and the data file.
    ex.edit("pricing.py", "return [float(row", "return [1 + float(row")
    out, builds = ex.run(*get)
    assert reason(out).startswith("built: pricing.py (py-ast) changed")
    ex.edit("data/prices.csv", "2,101.5", "2,111.5")
    out, builds = ex.run(*get)
    assert reason(out).startswith("built: data/prices.csv changed (blake3 ")
    assert builds == ["building X('linear', 2.0)"]

    # A developer's own counter, in trove.local.ron: named by explain, then rebuilt.
    shutil.copy(ex.root / "trove.local.example.ron", ex.root / "trove.local.ron")
    assert ex.run("main.py", "explain", "linear", "2")[0] == ["would build: counter alice 1 -> 2"]
    out, builds = ex.run(*get)
    assert reason(out) == "built: counter alice 1 -> 2"
    assert builds == ["building X('linear', 2.0)"]
    # The team's counter, in trove.ron, for an object nobody bumped locally.
    ex.edit("trove.ron", '"bob": 1', '"bob": 2')
    out, _ = ex.run(*get)
    assert reason(out) == "built: counter bob 1 -> 2"

    # Traits: tightened, the stored X fails them and is rebuilt; fixed data is served.
    ex.edit("traits.py", "MIN_ROWS = 3", "MIN_ROWS = 5")
    out, builds = ex.run(*get)
    assert reason(out) == "built: check failed: 4 rows, traits need at least 5"
    assert builds == ["building X('linear', 2.0)"]
    with open(ex.root / "data" / "prices.csv", "a") as f:
        f.write("5,103.0\n")
    out, builds = ex.run(*get)
    assert reason(out).startswith("built: data/prices.csv changed")
    out, builds = ex.run(*get)
    assert (reason(out), builds) == ("hit disk", [])

    # use_cache=False.
    out, builds = ex.run(*get, "--refresh")
    assert reason(out) == "refreshed" and builds == ["building X('linear', 2.0)"]

    # gc removes what the counters made dead, and keeps the live object.
    out, _ = ex.run("main.py", "gc")
    assert any("dead: counter alice 1 -> 2" in line for line in out), out
    assert any("quarantined: check failed" in line for line in out), out
    out, builds = ex.run(*get)
    assert (reason(out), builds) == ("hit disk", [])


def test_the_xfactory_expires_with_max_age(tmp_path):
    ex = Example("xfactory", tmp_path)
    get = ("main.py", "get", "linear", "2")
    ex.run(*get)
    ex.edit("trove.ron", 'max_age: "7d"', 'max_age: "1s"')
    # The object was built more than a second ago once this sleep ends: it is expired.
    time.sleep(1.2)
    out, builds = ex.run(*get)
    assert reason(out) == "built: expired (max_age 1s)"
    assert builds == ["building X('linear', 2.0)"]


def test_the_pipeline_example(tmp_path):
    ex = Example("pipeline", tmp_path)
    stages = ["readings", "normalized", "report"]

    def run() -> Tuple[List[str], List[str]]:
        out, builds = ex.run("run.py")
        return out[:3], [b.removeprefix("building ") for b in builds]

    out, builds = run()
    assert out == [f"{s}: built: no entry" for s in stages] and builds == stages
    assert run() == ([f"{s}: hit disk" for s in stages], [])

    # A comment in the helper module: code is its AST, nothing rebuilds.
    ex.edit("stats.py", "# Standardise: mean 0, standard deviation 1.", "# Standardise (z-score).")
    assert run() == ([f"{s}: hit disk" for s in stages], [])

    # A comment line in the data: readings rebuilds to the same array; early cutoff.
    ex.edit("data/readings.csv", "12.5\n", "# calibrated 2026-11\n12.5\n")
    out, builds = run()
    assert out[0].startswith("readings: built: data/readings.csv changed")
    assert out[1:] == ["normalized: hit disk", "report: hit disk"]
    assert builds == ["readings"]

    # A value in the data: every stage.
    ex.edit("data/readings.csv", "14.25", "15.25")
    out, builds = run()
    assert out[0].startswith("readings: built: data/readings.csv changed")
    assert out[1] == "normalized: built: dependency pipeline.readings \"(path='data/readings.csv')\" changed"
    assert out[2] == "report: built: dependency pipeline.normalized \"(path='data/readings.csv')\" changed"
    assert builds == stages

    # Code in the helper module: the stages that ran code from it.
    ex.edit("stats.py", '"n": int(values.size)', '"n": int(values.size), "mean": float(values.mean())')
    out, builds = run()
    assert out[0] == "readings: hit disk"
    assert out[1].startswith("normalized: built: stats.py (py-ast) changed")
    assert out[2].startswith("report: built: stats.py (py-ast) changed")
    assert builds == ["normalized", "report"]

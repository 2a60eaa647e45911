"""A three-stage numpy pipeline on trove: each stage is a recipe, each calls the one
before, so each is an input of the next (early cutoff: a stage rebuilt to the same
bytes rebuilds nothing after it).

    readings(path) -> normalized(path) -> report(path)
"""

from __future__ import annotations

import os
import sys

import numpy as np

import stats
import trove

# This directory's trove.ron, or (as here) none: the store is ./.trove beside this file.
engine = trove.Engine(os.path.dirname(os.path.abspath(__file__)))


def log(stage: str) -> None:
    print(f"building {stage}", file=sys.stderr)


@engine.recipe
def readings(path: str) -> np.ndarray:
    log("readings")
    return np.loadtxt(path, comments="#")  # tracked: the file, through open()


@engine.recipe
def normalized(path: str) -> np.ndarray:
    log("normalized")
    return stats.zscore(readings(path))


@engine.recipe
def report(path: str) -> dict:
    log("report")
    return stats.summarize(normalized(path))

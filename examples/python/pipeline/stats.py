"""Numerical helpers of the pipeline (a helper module: tracked by its AST)."""

import numpy as np


def zscore(values):
    # Standardise: mean 0, standard deviation 1.
    return (values - values.mean()) / values.std()


def summarize(values):
    return {"n": int(values.size), "max": float(values.max()), "min": float(values.min())}

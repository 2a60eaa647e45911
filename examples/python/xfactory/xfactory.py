"""The seed's XFactory on trove.

An X is expensive to make and immutable once made. Before trove, the factory kept a dict
of X by arguments and pickled each to disk; it was only as right as the version counter
someone remembered to bump. Here the factory is one recipe: an X is served from memory
(the same object to every caller), from the store, or built -- once, however many
threads or processes ask -- and served again only while everything it was built from is
unchanged: this module's code and `pricing.py`'s (by their AST: comments and formatting
do not count), the plugin imported by name, `data/prices.csv`, the developers' counters
in `trove.ron` / `trove.local.ron`, and its age (`max_age` in `trove.ron`). Its traits
(`traits.py`) are checked before a stored X is served.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Tuple

import pricing
import trove
from traits import traits

HERE = os.path.dirname(os.path.abspath(__file__))
engine = trove.Engine(os.path.join(HERE, "trove.ron"))


@dataclass(frozen=True)
class X:
    kind: str
    scale: float
    prices: Tuple[float, ...]
    scores: Tuple[float, ...]


class XFactory:
    """Makes X objects (``XFactory.get_x(kind, scale)``)."""

    @staticmethod
    @engine.recipe(check=traits)
    def get_x(kind: str, scale: float) -> X:
        print(f"building X({kind!r}, {scale})", file=sys.stderr)
        prices = pricing.load_prices(os.path.join(HERE, "data", "prices.csv"))
        plugin = importlib.import_module("plugins." + kind)  # tracked, name and all
        return X(kind, scale, tuple(prices), tuple(plugin.score(prices, scale)))

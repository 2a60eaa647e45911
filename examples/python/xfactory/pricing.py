"""Reading the price history (a helper module: its code is tracked by its AST)."""

import csv


def load_prices(path):
    with open(path, newline="") as f:  # tracked: editing the file rebuilds
        return [float(row["price"]) for row in csv.DictReader(f)]

"""The `prices` recipe: average price per symbol in USD, on trading days only.

Reads data/prices.csv and data/fx.csv (found next to this script, so it runs
from any directory), and the calendar object named by $TROVE_NEED_CALENDAR
when trove provides it. $MARKET, if set, keeps only symbols quoted in that
currency. Writes the table to stdout and the files it read, one a line, to
the file named by $TROVE_DEPFILE when that is set.
"""

import csv
import os
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
prices_path = root / "data" / "prices.csv"
fx_path = root / "data" / "fx.csv"
read = [prices_path, fx_path]

with fx_path.open(newline="") as f:
    usd_per_unit = {row["currency"]: float(row["usd_per_unit"]) for row in csv.DictReader(f)}

calendar_path = os.environ.get("TROVE_NEED_CALENDAR")
trading_days = None
if calendar_path:
    with open(calendar_path) as f:
        trading_days = {line.strip() for line in f if line.strip()}

market = os.environ.get("MARKET")
totals = {}
with prices_path.open(newline="") as f:
    for row in csv.DictReader(f):
        if trading_days is not None and row["date"] not in trading_days:
            continue
        if market and row["currency"] != market:
            continue
        usd = float(row["price"]) * usd_per_unit[row["currency"]]
        count, total = totals.get(row["symbol"], (0, 0.0))
        totals[row["symbol"]] = (count + 1, total + usd)

print("symbol  days  avg_usd")
for symbol in sorted(totals):
    count, total = totals[symbol]
    print(f"{symbol:<6}  {count:>4}  {total / count:>7.2f}")

depfile = os.environ.get("TROVE_DEPFILE")
if depfile:
    with open(depfile, "w") as f:
        for path in read:
            f.write(f"{path}\n")

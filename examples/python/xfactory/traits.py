"""Invariants an X must satisfy before it is served from the store (the seed's "traits").

This module runs when an X is loaded, not when it is built, so tightening a trait does
not rebuild anything by itself: the stored X that no longer satisfies it is quarantined
and rebuilt when next asked for, with the failure as the reason.
"""

MIN_ROWS = 3


def traits(x):
    if len(x.scores) < MIN_ROWS:
        return f"{len(x.scores)} rows, traits need at least {MIN_ROWS}"
    if any(p <= 0 for p in x.prices):
        return "a price is not positive"
    return None

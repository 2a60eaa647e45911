"""The `calendar` recipe: trading days of January 2024, one ISO date a line.

Weekends are closed. Its output is what `prices` gets in $TROVE_NEED_CALENDAR.
"""

import datetime

day = datetime.date(2024, 1, 1)
while day.month == 1:
    if day.weekday() < 5:
        print(day.isoformat())
    day += datetime.timedelta(days=1)

"""Runs the pipeline on data/readings.csv; prints each stage's reason, then the report."""

import pipeline

PATH = "data/readings.csv"

for stage in (pipeline.readings, pipeline.normalized, pipeline.report):
    _, reason = stage.get_explained(PATH)
    print(f"{stage.__name__}: {reason}")
print("report:", pipeline.report(PATH))

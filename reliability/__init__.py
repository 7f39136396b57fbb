"""The field-reliability suite: the whole sentry under load and faults, each part printing its figures.

Run: `bash scripts/reliability` (short form, a few minutes) or `bash scripts/reliability --long`
(the figures the README quotes); name parts to run only those (`bash scripts/reliability soak fuzz`).
Every part is a module here with a `PART` (see `report.Part`); `run.py` finds them.
"""

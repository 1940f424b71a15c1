"""The generate stage: every exercise of a design made into records and probes."""

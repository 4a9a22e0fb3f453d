"""Runs of tasks: training one and writing its directory, loading it back, ensembles, teachers,
studies of several runs, the lab report and diagnostics."""

"""The engine: what runs a benchmark, below the command line and above the methods.

Run specs and planning, the one trainer and its callbacks, execution under a tracker
(MLflow or in memory), tuning, sweeps and their executors, the step benchmark.
"""

"""The training engine: one process's share of one run, and nothing about who started it.

Why a package of its own: trainer, batches, schedule, precision, accumulation, checkpoint files,
the applied recipe and the distributed helpers are what a user's job needs from remedies, and
what every caller (the CLI, a search's trial, a reproduction run) shares. None of it imports
Ray, MLflow or Optuna (a test over the imports checks it): launching K data-parallel workers
is `remedies.launch`'s, logging and scheduling the search's.
"""

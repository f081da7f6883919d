"""Where a search's records live: the Optuna study's storage, the MLflow tracking store and Tune's
results folder (local or a storage URI).

Why a package below both `search/` and `results/`: the search opens them to write while it runs,
the reports open the same stores to read a finished search, and neither should import the other
to get there. Opening and checking a store is here; what is written where is the search's.
"""

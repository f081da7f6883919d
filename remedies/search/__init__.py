"""What writes while a search runs: its space, driver, searcher, trials, references, stores and
Ray runtime. `driver.run_search` reads top to bottom."""

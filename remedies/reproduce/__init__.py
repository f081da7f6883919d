"""`remedies reproduce`: Keskar et al. (2017)'s protocol, re-run, and a report beside the paper's.

protocol.py  what to run (typed options, one RunSpec per independent training run)
task.py      one run: train, measure, the numbers a report needs (no Ray, no MLflow)
driver.py    runs the specs as Ray tasks with a progress line and an ETA; logs to MLflow
figures.py   Fig. 3/4/5 as PNG
report.py    Tables 2–4, the side-by-side measures and the verdicts, as Markdown
paper.py     the paper's own numbers, to print beside ours
"""

"""What reads a finished search: report, answer, plots, export, confirm, backup. Imports no Ray."""

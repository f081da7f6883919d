"""remedies — search for training recipes that close the large-batch generalization gap."""

__version__ = "0.1.0"

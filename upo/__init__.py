"""upo-bench: reproducible benchmark for preference optimisation with auxiliary objectives.

The package holds all logic; the Snakemake workflow only calls ``python -m upo <subcommand>``.
"""

__version__ = "0.1.0"

"""Floor 7, evaluation: statistical tests, the AutoEncoder's reconstruction quality, panels,
diagnostics, plots and the report."""

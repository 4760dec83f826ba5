"""Floor 7, evaluation: per-gene metrics, statistical tests, panels, diagnostics,
plots and the report."""

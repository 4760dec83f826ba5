"""landmark: find the genes from which a transcriptome can be inferred (Kong et al. 2021)."""

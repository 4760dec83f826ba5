"""Floor 4, attribution: DeepLIFT Rescale, gradient-based attributions and gene ranking."""

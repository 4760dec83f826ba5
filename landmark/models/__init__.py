"""Floor 2, models: Flax NNX modules only (AutoEncoder, D-GEX MLP, Concrete selector)."""

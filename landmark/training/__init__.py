"""Floor 3, training: the one training core, orbax checkpointing, TensorBoard writing,
sharding over a device mesh, and the AutoEncoder's training."""

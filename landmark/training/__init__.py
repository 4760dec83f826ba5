"""The one training core, with its checkpointing, TensorBoard writing and sharding."""

"""Floor 5, inference: fitting linear, ridge, KNN and D-GEX inference models; saving
and applying them (`--mode=infer`)."""

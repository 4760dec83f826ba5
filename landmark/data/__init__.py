"""Floor 1, data: readers of every format, streaming, preprocessing, study correction and
scalers."""

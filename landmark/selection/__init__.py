"""Floor 6, selection: every landmark selector behind one `select`."""

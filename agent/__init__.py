"""deltamem's model and its math: delta-rule memory, encoders, agents. No Ray, no SQL."""

"""δ-mem on a causal LM (SmolLM2-135M-Instruct): backbone, δ-mem modules, training, the chat agent."""

"""The shared evaluator: top-k, metrics, populations, uncertainty and cost, for every model alike."""

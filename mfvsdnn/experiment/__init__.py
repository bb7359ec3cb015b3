"""Experiments: the runner (train, evaluate, summarise), the verdicts, sweeps and scaling curves."""

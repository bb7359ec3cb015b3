"""WALS: weighted alternating least squares with an unobserved weight w0."""

from .model import WALS, gram, gram_term, objective

__all__ = ["WALS", "gram", "gram_term", "objective"]

"""The softmax DNN: a query tower over history and user features, scored against item embeddings."""

from .model import SoftmaxDNN

__all__ = ["SoftmaxDNN"]

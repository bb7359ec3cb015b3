"""Interaction data: column detection, the loader, the dataset, the split and synthetic data."""

from .loader import (
    ITEM_ALIASES,
    USER_ALIASES,
    ColumnSpec,
    Dataset,
    dataset_from_frame,
    file_sha256,
    parse_sep,
    read_header,
    read_interactions,
    resolve_columns,
    resolve_header,
    summarize,
    user_group_of,
)

__all__ = ["ITEM_ALIASES", "USER_ALIASES", "ColumnSpec", "Dataset", "dataset_from_frame", "file_sha256",
           "parse_sep", "read_header", "read_interactions", "resolve_columns", "resolve_header", "summarize",
           "user_group_of"]

"""The package version (recorded in every run and report)."""

__version__ = "0.1.0"

"""Foundations every other package builds on: errors, the progress protocol, atomic files, numba helpers."""

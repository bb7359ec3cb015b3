"""Rendering: terminal tables, Markdown, HTML and plots. Reads results; computes nothing."""

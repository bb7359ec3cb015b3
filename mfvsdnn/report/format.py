"""Number formatting shared by every renderer (terminal, Markdown, HTML)."""

from __future__ import annotations

import math
from typing import Any


def fmt(x: Any, digits: int = 4) -> str:
    """Human formatting for numbers in tables."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e6):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"
    return str(x)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_value(v: Any, unit: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if unit == "bytes":
        return fmt_bytes(float(v))
    if unit == "s":
        return f"{v:.3g} s"
    if unit == "ms":
        return f"{v:.3g} ms"
    if unit == "count":
        return fmt(int(v))
    return f"{v:.4f}"


def fmt_ci(ci: Any, digits: int = 4) -> str:
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return ""
    return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    return f"p={p:.3f}" if p >= 0.001 else "p<0.001"

"""Which column means what: the column options, the default names and aliases, and their messages.

Everything here works on a header already read (a list of names), so the local loader and the Spark
reader share it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError

USER_ALIASES = ("user_id", "user", "userId", "userid", "UserID", "query_id", "userID")
ITEM_ALIASES = ("item_id", "item", "itemId", "itemid", "ItemID", "movieId", "movie_id", "artistID")
SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}

# The one whitespace rule: spaces and tabs around every field (and every header name) are removed;
# nothing else about a field is changed.
BLANKS = " \t"

_LIST_AT_MOST = 20  # header names listed in a message; a wrong --sep can make one huge "name"


@dataclass(frozen=True)
class ColumnSpec:
    """How to read the interaction file. ``None`` means "detect" (see DESIGN.md, Input)."""

    user_col: str | None = None
    item_col: str | None = None
    weight_col: str | None = None
    min_weight: float | None = None
    time_col: str | None = None
    item_group_col: str | None = None
    user_group_col: str | None = None
    user_features: tuple[str, ...] = ()
    sep: str = ","

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["user_features"] = list(self.user_features)
        return d

    def used(self) -> list[str]:
        """The named columns, each once, in a fixed order (user, item, weight, time, groups, features)."""
        cols = [self.user_col, self.item_col, self.weight_col, self.time_col, self.item_group_col,
                self.user_group_col, *self.user_features]
        return list(dict.fromkeys(c for c in cols if c))


def parse_sep(sep: str) -> str:
    """Accept ``,``, ``\\t``, ``tab``, ``;``... and return the one-character delimiter."""
    s = SEP_NAMES.get(sep.lower(), sep) if sep else ","
    if len(s) != 1:
        raise DataError(f"--sep must be one character (or tab, comma, semicolon, pipe, space), got {sep!r}")
    return s


def clean_name(name: str) -> str:
    """A header name under the whitespace rule."""
    return name.strip(BLANKS)


def _shown(name: str) -> str:
    """A header name fit for a one-line message: control characters escaped, long names cut."""
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= 40 else text[:37] + "..."


def _listing(header: list[str]) -> str:
    shown = [_shown(h) for h in header[:_LIST_AT_MOST]]
    more = f" and {len(header) - _LIST_AT_MOST} more" if len(header) > _LIST_AT_MOST else ""
    return (", ".join(shown) or "nothing") + more


def _suggest(name: str, header: list[str]) -> str:
    close = difflib.get_close_matches(name, header, n=3, cutoff=0.5)
    if not close:
        close = [h for h in header if h and (name.lower() in h.lower() or h.lower() in name.lower())][:3]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _no_column(path: Path, name: str, option: str, header: list[str]) -> DataError:
    return DataError(f"{path}: no column {name!r} (given by {option}); the columns are "
                     f"{_listing(header)}.{_suggest(name, header)}")


def _resolve(path: Path, header: list[str], explicit: str | None, aliases: tuple[str, ...],
             what: str, option: str) -> str:
    if explicit is not None:
        if explicit not in header:
            raise _no_column(path, explicit, option, header)
        return explicit
    for a in aliases:
        if a in header:
            return a
    lower = {h.lower(): h for h in header}
    for a in aliases:
        if a.lower() in lower:
            return lower[a.lower()]
    raise DataError(
        f"{path}: no {what} column: looked for {', '.join(aliases[:4])}; the columns are "
        f"{_listing(header)}.{_suggest(aliases[0], header)} "
        f"Name it with {option} (and check the file has a header row and the right --sep)."
    )


def _optional(path: Path, header: list[str], explicit: str | None, default: str | None,
              option: str) -> str | None:
    if explicit is not None:
        if explicit == "":
            return None
        if explicit not in header:
            raise _no_column(path, explicit, option, header)
        return explicit
    return default if default in header else None


def _refuse_duplicates(path: Path, header: list[str], used: list[str]) -> None:
    """Two columns with the same (cleaned) name: which one is meant cannot be told, so refuse."""
    for name in used:
        where = [k + 1 for k, h in enumerate(header) if h == name]
        if len(where) > 1:
            raise DataError(f"{path}: the header names {name!r} {len(where)} times (columns "
                            f"{', '.join(map(str, where))}); rename all but one")


def resolve_header(path: Path, header: list[str], spec: ColumnSpec) -> ColumnSpec:
    """Column detection on a header already read (also used by the Spark reader). ``path`` names the source."""
    sep = parse_sep(spec.sep)
    user = _resolve(path, header, spec.user_col, USER_ALIASES, "user", "--user-col")
    item = _resolve(path, header, spec.item_col, ITEM_ALIASES, "item", "--item-col")
    if user == item:
        raise DataError(f"{path}: the user and item columns are both {user!r}")
    weight = _optional(path, header, spec.weight_col, None, "--weight-col")
    time = _optional(path, header, spec.time_col, None, "--time-col")
    igroup = _optional(path, header, spec.item_group_col, "item_group", "--item-group-col")
    ugroup = _optional(path, header, spec.user_group_col, "user_group", "--user-group-col")
    feats = []
    for f in spec.user_features:
        f = f.strip()
        if not f:
            continue
        if f not in header:
            raise _no_column(path, f, "--user-features", header)
        if f in (user, item):
            raise DataError(f"{path}: --user-features names {f!r}, which is the user or item column")
        feats.append(f)
    if spec.min_weight is not None and weight is None:
        raise DataError("--min-weight needs --weight-col (the column holding the weight)")
    out = ColumnSpec(user, item, weight, spec.min_weight, time, igroup, ugroup, tuple(feats), sep)
    _refuse_duplicates(path, header, out.used())
    return out

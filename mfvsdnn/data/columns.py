"""Which column means what: the column options, the default names and aliases, and their messages.

Everything here works on a header already read (a list of names), so the local loader and the Spark
reader share it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DataError

USER_ALIASES = ("user_id", "user", "userId", "userid", "UserID", "query_id", "userID", "customer_id")
ITEM_ALIASES = ("item_id", "item", "itemId", "itemid", "ItemID", "itemID", "movieId", "movie_id", "artistID", "placeID",
                "product_id", "productId", "business_id")
SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}

# The one whitespace rule: spaces and tabs around every field (and every header name) are removed;
# nothing else about a field is changed.
BLANKS = " \t"

# RecBole's atomic files (.inter, .user, .item) type every header name: ``user_id:token``. When every
# name carries such a type, the type is dropped, so ``--user-features age`` names ``age:token``.
_RECBOLE_NAME = re.compile(r"^(.+):(token|token_seq|float|float_seq)$")

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
    user_file: str | None = None  # side table: one row per user (features, user group)
    item_file: str | None = None  # side table: one row per item (item group)

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


def clean_header(names: list[str]) -> list[str]:
    """Header names under the whitespace rule, RecBole's ``:type`` suffixes dropped when every name has one."""
    cleaned = [clean_name(n) for n in names]
    typed = [_RECBOLE_NAME.match(n) for n in cleaned]
    if cleaned and all(typed):
        return [m.group(1) for m in typed]  # type: ignore[union-attr]
    return cleaned


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


@dataclass(frozen=True)
class SideHeader:
    """The header of a side table (``--user-file``/``--item-file``) and the delimiter that reads it."""

    path: Path
    header: list[str]
    sep: str


SIDE_OPTIONS = {"user": "--user-file", "item": "--item-file"}


def side_id_column(side: SideHeader, main_col: str, what: str) -> str:
    """The id column of a side table: the interaction file's name for it, else the same aliases."""
    if main_col in side.header:
        return main_col
    aliases = USER_ALIASES if what == "user" else ITEM_ALIASES
    for a in aliases:
        if a in side.header:
            return a
    lower = {h.lower(): h for h in side.header}
    for a in aliases:
        if a.lower() in lower:
            return lower[a.lower()]
    raise DataError(
        f"{side.path}: no {what} id column (given by {SIDE_OPTIONS[what]}): looked for {main_col!r} (the interaction "
        f"file's) and {', '.join(aliases[:4])}; the columns are {_listing(side.header)}.{_suggest(main_col, side.header)}"
        " Rename its id column to match (and check the file has a header row)."
    )


def _locate(path: Path, header: list[str], sides: dict[str, SideHeader], ids: dict[str, str], name: str,
            option: str, owner: str, explicit: bool) -> str | None:
    """Find a group or feature column (describing ``owner``) in the interaction file or ``owner``'s side table.

    A name in both is refused: which one is meant cannot be told. Returns None when a default is absent."""
    side = sides.get(owner)
    in_side = side is not None and name in side.header and name != ids.get(owner)
    if name in header and in_side:
        raise DataError(f"{option} names {name!r}, a column of both {path} and {side.path} "  # type: ignore[union-attr]
                        f"({SIDE_OPTIONS[owner]}); drop or rename it in one of them so it is clear which is meant")
    if name in header or in_side:
        return name
    if not explicit:
        return None
    other = "item" if owner == "user" else "user"
    if other in sides and name in sides[other].header and name != ids.get(other):
        raise DataError(f"{option} names {name!r}, a column of {sides[other].path} ({SIDE_OPTIONS[other]}), which "
                        f"describes {other}s; it must come from {path} or the {owner} file ({SIDE_OPTIONS[owner]})")
    if side is None:
        raise _no_column(path, name, option, header)
    both = header + [h for h in side.header if h not in header]
    raise DataError(f"no column {name!r} (given by {option}) in {path} or in {side.path} ({SIDE_OPTIONS[owner]}); "
                    f"their columns are {_listing(both)}.{_suggest(name, both)}")


def resolve_header(path: Path, header: list[str], spec: ColumnSpec,
                   sides: dict[str, SideHeader] | None = None) -> ColumnSpec:
    """Column detection on a header already read (also used by the Spark reader). ``path`` names the source.

    ``sides`` holds the headers of the side tables ``spec`` names (``"user"``, ``"item"``); groups and
    features may then be columns of the interaction file or of the matching side table.
    """
    sep = parse_sep(spec.sep)
    if sides is None:
        if spec.user_file or spec.item_file:
            raise DataError("--user-file and --item-file are read by the local loader only, not by the Spark "
                            "engine; join the side table into the interaction file first")
        sides = {}
    user = _resolve(path, header, spec.user_col, USER_ALIASES, "user", "--user-col")
    item = _resolve(path, header, spec.item_col, ITEM_ALIASES, "item", "--item-col")
    if user == item:
        raise DataError(f"{path}: the user and item columns are both {user!r}")
    ids = {what: side_id_column(s, user if what == "user" else item, what) for what, s in sides.items()}
    weight = _optional(path, header, spec.weight_col, None, "--weight-col")
    time = _optional(path, header, spec.time_col, None, "--time-col")

    def group(explicit: str | None, default: str, option: str, owner: str) -> str | None:
        if explicit == "":
            return None
        return _locate(path, header, sides, ids, explicit if explicit is not None else default, option, owner,
                       explicit is not None)

    igroup = group(spec.item_group_col, "item_group", "--item-group-col", "item")
    ugroup = group(spec.user_group_col, "user_group", "--user-group-col", "user")
    feats = []
    for f in spec.user_features:
        f = f.strip()
        if not f:
            continue
        if f in (user, item) or f == ids.get("user"):
            raise DataError(f"{path}: --user-features names {f!r}, which is the user or item column")
        feats.append(_locate(path, header, sides, ids, f, "--user-features", "user", True))
    if spec.min_weight is not None and weight is None:
        raise DataError("--min-weight needs --weight-col (the column holding the weight)")
    out = ColumnSpec(user, item, weight, spec.min_weight, time, igroup, ugroup, tuple(feats), sep,  # type: ignore[arg-type]
                     spec.user_file, spec.item_file)
    _refuse_duplicates(path, header, [c for c in out.used() if c in header])
    for what, s in sides.items():
        _refuse_duplicates(s.path, s.header, [ids[what], *[c for c in out.used() if c in s.header]])
    return out

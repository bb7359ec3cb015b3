"""Config files: a TOML file holding any command's options, read into one command's values.

The file has a shared top level (options of any command; each command takes those it has) and one
table per command (``[compare]``, ``[train-softmax]``, ...; a command's table wins over the top level).
Keys are option names without the leading dashes, with ``-`` or ``_`` (``user-features`` or
``user_features``); a ``--x/--no-x`` flag is ``x = true|false``. Values are TOML strings, numbers or
booleans; a list is a comma-separated option's items (``k = [10, 20]``) or a repeatable option's
occurrences; a table is a repeatable KEY=VALUE option's pairs (``wals-param = {iterations = 10}``).

This module only reads and names things: the values are checked by the command line itself (the CLI
feeds them in as defaults), so a config value meets exactly the checks of the same value typed.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MfvsdnnError


class ConfigError(MfvsdnnError):
    """A config file that cannot be read or names an option that does not exist."""


@dataclass(frozen=True)
class OptionSlot:
    """What a command accepts under one config key: the parameter it fills and how."""

    param: str            # the command's parameter name (e.g. json_out for --json)
    multiple: bool        # a repeatable option: the value is a list of occurrences


def key_name(key: str) -> str:
    """The spelling-independent form of a config key: ``user-features`` and ``user_features`` are one key."""
    return key.strip().lstrip("-").replace("_", "-").lower()


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed TOML document; an unreadable or malformed file is one ConfigError naming it."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path}: is a folder, not a TOML file") from None
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid TOML: {e}") from None


def _value(value: Any, slot: OptionSlot, where: str) -> Any:
    """A TOML value in the form the command line gives the option."""
    if slot.multiple:
        if isinstance(value, Mapping):
            return [f"{k}={json.dumps(v)}" for k, v in value.items()]
        return [_scalar(v, where) for v in value] if isinstance(value, list) else [_scalar(value, where)]
    if isinstance(value, list):
        return ",".join(str(_scalar(v, where)) for v in value)
    return _scalar(value, where)


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, (Mapping, list)):
        raise ConfigError(f"{where} expects a single value, got {value!r}")
    if not isinstance(value, (str, int, float, bool)):  # TOML dates and times: no option takes one
        raise ConfigError(f"{where} expects a string, number or boolean, got {value!r}")
    return value


def command_values(doc: Mapping[str, Any], command: str, commands: Mapping[str, Mapping[str, OptionSlot]],
                   path: str | Path) -> dict[str, Any]:
    """The values ``command`` takes from a parsed config: ``{parameter name: value}``.

    ``commands`` maps every command name to its config keys (see :func:`key_name`). A top-level key must
    be an option of some command (a command without it ignores it); a table must be a command's and
    hold only that command's options. Anything else is a ConfigError naming the key and the valid ones.
    """
    shared: dict[str, Any] = {}
    tables: dict[str, Mapping[str, Any]] = {}
    every_key = sorted({key for keys in commands.values() for key in keys})
    for key, value in doc.items():
        if key in commands:
            if not isinstance(value, Mapping):
                raise ConfigError(f"--config {path}: [{key}] must be a table of {key}'s options")
            tables[key] = value
        elif key_name(key) in every_key:
            shared[key] = value
        else:
            raise ConfigError(f"--config {path}: unknown key {key!r} at the top level; valid keys: a command's "
                              f"table ({', '.join(sorted(commands))}) or an option: {', '.join(every_key)}")
    for name, table in tables.items():  # a typo in another command's table is caught now, not at its run
        unknown = [key for key in table if key_name(key) not in commands[name]]
        if unknown:
            raise ConfigError(f"--config {path}: unknown key {unknown[0]!r} in [{name}]; valid keys: "
                              f"{', '.join(sorted(commands[name]))}")
    own = commands[command]
    out: dict[str, Any] = {}
    for key, value in shared.items():
        if key_name(key) in own:
            slot = own[key_name(key)]
            out[slot.param] = _value(value, slot, f"--config {path}: {key}")
    for key, value in tables.get(command, {}).items():
        slot = own[key_name(key)]
        out[slot.param] = _value(value, slot, f"--config {path}: [{command}] {key}")
    return out

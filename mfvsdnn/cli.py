"""The ``mfvsdnn`` command line. Commands are thin: parse options, call one library function, render.

Only this module turns an :class:`~mfvsdnn.core.errors.MfvsdnnError` (or a usage error) into a message on
stderr and exit status 1.
"""

import errno
import functools
import inspect
import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from . import api
from .core.config import OptionSlot, command_values, key_name, read_config
from .core.errors import ABORTED_EXIT, MfvsdnnError
from .core.memory import check_memory
from .core.progress import silent
from .core.version import __version__
from .data import ColumnSpec, parse_sep
from .data.split import SplitConfig
from .data.synthetic import SyntheticConfig
from .experiment.scale import (
    MAX_EXAMPLES_TIMED,
    MAX_LATENCY_QUERIES,
    MAX_MEAN_INTERACTIONS,
    MAX_SIZE,
    MAX_USERS_PER_ITEM,
    MIN_SIZE,
)
from .experiment.spec import MAX_REPEATS, MAX_TUNE
from .models.params import (
    HYPER_PARAMETERS,
    MAX_BATCH,
    MAX_BOOTSTRAP,
    MAX_BUCKETS,
    MAX_CG_STEPS,
    MAX_DIM,
    MAX_EPOCHS,
    MAX_FOLD_IN_PRIOR,
    MAX_HARD_POOL,
    MAX_HASHES,
    MAX_ITERATIONS,
    MAX_K,
    MAX_LAYERS,
    MAX_LR,
    MAX_NEGATIVES,
    MAX_REG,
    MAX_SEED,
    MAX_THREADS,
    MAX_WIDTH,
)
from .models.registry import check_params
from .report import terminal

try:  # recent typer vendors click
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException, UsageError
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - typer on click itself
    from click.core import ParameterSource
    from click.exceptions import ClickException, UsageError
    from click.globals import get_current_context

out_console = Console()
err_console = Console(stderr=True)

#: the arguments of this invocation, for the command line that reproduces a report
INVOCATION: list[str] = []


def command_line(extra: dict[str, Any] | None = None) -> str:
    """The one command line that reproduces this invocation (shell-quoted), recorded in every report.

    It is the arguments as typed with ``--config FILE`` expanded: every option the file gave is written
    out, so the line re-runs without the file (and cannot drift when the file is edited). ``extra``
    (parameter name -> value) adds options the command chose itself, e.g. the split options of loaded runs.
    """
    args = _without_config(INVOCATION)
    ctx = get_current_context(silent=True)
    if ctx is not None:
        params = {p.name: p for p in ctx.command.params}
        for name, param in params.items():
            if ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP:
                args += _option_tokens(param, ctx.params.get(name))
        for name, value in (extra or {}).items():
            args += _option_tokens(params[name], value)
    return shlex.join(["mfvsdnn", *args])


def _without_config(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--config":
            skip = True
        elif not arg.startswith("--config="):
            out.append(arg)
    return out


def _option_tokens(param: Any, value: Any) -> list[str]:
    """The command-line tokens that give ``param`` this (converted) value."""
    if value is None:
        return []
    name = max(param.opts, key=len)
    if getattr(param, "is_flag", False) and isinstance(value, bool):
        if param.secondary_opts:
            return [name if value else max(param.secondary_opts, key=len)]
        return [name] if value else []
    if getattr(param, "multiple", False):
        return [token for item in value for token in (name, str(item))]
    return [name, str(value)]


MAX_SERVING_SAMPLE = 1_000_000
MAX_JOBS = 256
MAX_USERS = 100_000_000        # make-data
MAX_ITEMS = 100_000_000
MAX_GROUPS = 100_000
MAX_TASTE_DIM = 1024
MAX_ZIPF = 10.0
SYNTHETIC_BYTES_PER_ROW = 200  # make-data's peak while generating (measured: 151 at 400k rows)
TRACEBACK_ENV = "MFVSDNN_TRACEBACK"  # set to 1 to see the traceback of an unexpected error


def _error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)


def _usage_line(e: Any) -> str:
    """One line for a usage error (bad option or value), pointing at the command's --help."""
    ctx = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    param = getattr(e, "param", None)
    if ctx is not None and param is not None and ctx.get_parameter_source(param.name) == ParameterSource.DEFAULT_MAP:
        where = f" (the value is from --config {ctx.params.get('config')}){where}"
    return " ".join(e.format_message().split()) + where


def _os_error_line(e: OSError) -> str:
    """'PATH: reason' (e.g. 'runs/x/model.npz: No space left on device')."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.filename is not None and e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    if e.filename is not None:
        return f"{e.filename}: {reason}"
    return reason


class _ReadableHelp:
    """Help that reads as the README writes it: arguments as DATA and RUN (typer prints ``{data}``) and
    flags without a value type (typer prints ``--json <bool>``, which reads as if it took a value)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.param_type_name == "argument" and param.metavar is None:
                param.metavar = param.name.upper()
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []  # type: ignore[attr-defined]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        if isinstance(self, TyperGroup):
            pieces.append(self.subcommand_metavar)
        return pieces


class _Command(_ReadableHelp, TyperCommand):
    """A command whose help reads as the README writes it."""


class _Group(_ReadableHelp, TyperGroup):
    """Every failure ends as one line on stderr, never a traceback: usage errors (bad option or
    value) and library errors exit 1; so do OSError (disk full, read-only folder), MemoryError and,
    as a last resort, any other exception (set MFVSDNN_TRACEBACK=1 to see its traceback). Ctrl-C
    prints "Aborted" and exits 130."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # `mfvsdnn` alone shows the help
                raise
            _error(_usage_line(e))
            raise typer.Exit(1) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":
                raise
            _error(_usage_line(e))
        except ClickException as e:
            _error(" ".join(e.format_message().split()))
        except MfvsdnnError as e:
            _error(str(e))
        except KeyboardInterrupt:
            err_console.print("Aborted", highlight=False)
            raise typer.Exit(ABORTED_EXIT) from None
        except MemoryError as e:
            command = f"mfvsdnn {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "mfvsdnn"
            detail = f": {e}" if str(e) else ""
            _error(f"not enough memory for {command}{detail}; try smaller sizes or a machine with more memory")
        except OSError as e:
            if e.errno == errno.EPIPE:  # output closed early (e.g. `| head`): typer exits quietly
                raise
            _error(_os_error_line(e))
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:
            if os.environ.get(TRACEBACK_ENV):
                raise
            command = f"mfvsdnn {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "mfvsdnn"
            _error(f"unexpected {type(e).__name__} in {command}: {e} (a bug: please report it with the "
                   f"command line; {TRACEBACK_ENV}=1 shows the traceback)")
        raise typer.Exit(1)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        INVOCATION[:] = list(sys.argv[1:] if args is None else args)
        streams = sys.stdout, sys.stderr
        # piped output (help, tables) without the trailing spaces rich pads lines with
        sys.stdout, sys.stderr = (terminal.TrimmedStream(s) for s in streams)
        try:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        except MfvsdnnError as e:  # raised outside a command (e.g. by an eager option)
            _error(str(e))
            sys.exit(1)
        except SystemExit as e:
            if e.code == 2:  # a usage error (bad option or value): one exit status for all bad input
                sys.exit(1)
            raise
        finally:
            sys.stdout, sys.stderr = streams


class _Typer(typer.Typer):
    """typer.Typer whose commands are :class:`_Command` (readable usage lines and flags)."""

    def command(self, name: str | None = None, *, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or _Command, **kwargs)


app = _Typer(
    cls=_Group,
    help="WALS matrix factorization vs a softmax DNN for candidate retrieval: both trained on the same "
         "interaction CSV and split, measured side by side by one evaluator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode="rich",
)


@dataclass
class _Output:
    """Root options that shape what a command prints on stderr."""

    quiet: bool = False


OUTPUT = _Output()


def _progress(description: str) -> Any:
    """The progress factory of every command: a bar on stderr, or nothing under --quiet."""
    return silent(description) if OUTPUT.quiet else terminal.progress_bar(description, err_console)


def _info(message: str) -> None:
    """A line on stderr that tells what the command did on its own (not shown under --quiet)."""
    if not OUTPUT.quiet:
        err_console.print(message, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"mfvsdnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no informational lines on "
                                        "stderr; errors and the results are still printed.")] = False,
) -> None:
    """WALS vs softmax DNN, measured on your data."""
    OUTPUT.quiet = quiet


# ---------------------------------------------------------------------------------------------
# shared data and split options: one definition, added to every command that reads a CSV


@dataclass
class DataOptions:
    columns: ColumnSpec
    split: SplitConfig
    test: Path | None

    def as_dict(self) -> dict:
        return {"columns": self.columns.as_dict(), "split": self.split.as_dict(),
                "test": str(self.test) if self.test else None}


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    """The range in typer's notation (as its [x>=1] for integer options): 0<x<=10, x>=0, finite."""
    if lo is None and hi is None:
        return "finite"
    if hi is None:
        return f"x{'>' if lo_open else '>='}{lo:g}"
    if lo is None:
        return f"x{'<' if hi_open else '<='}{hi:g}"
    return f"{lo:g}{'<' if lo_open else '<='}x{'<' if hi_open else '<='}{hi:g}"


def _real(help_: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
          hi_open: bool = False, **option: Any) -> Any:
    """A float option that must be finite and inside the interval; --help ends with the range.

    typer's min=/max= cannot express open bounds and let inf through, hence a callback.
    """
    rng = _interval(lo, hi, lo_open, hi_open)

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        ok = math.isfinite(value)
        if ok and lo is not None:
            ok = value > lo if lo_open else value >= lo
        if ok and hi is not None:
            ok = value < hi if hi_open else value <= hi
        if not ok:
            raise typer.BadParameter(f"{value:g} is not a finite number" if not math.isfinite(value)
                                     else f"{value:g} is not in {rng}")
        return value

    return typer.Option(help=f"{help_} \\[{rng}]", callback=check, **option)


def _opt(name: str, annotation: Any, default: Any, help_: str, panel: str, **option: Any) -> inspect.Parameter:
    """A shared option as a keyword parameter; ``option`` may hold typer's min/max, or ``real`` =
    (lo, hi, lo_open, hi_open) for a float range (see :func:`_real`)."""
    real = option.pop("real", None)
    if real is not None:
        lo, hi, lo_open, hi_open = real
        info = _real(help_, lo, hi, lo_open=lo_open, hi_open=hi_open, rich_help_panel=panel,
                     show_default=default is not None)
        info.param_decls = (name,)
    else:
        info = typer.Option(name, help=help_, rich_help_panel=panel, show_default=default is not None, **option)
    return inspect.Parameter(name.lstrip("-").replace("-", "_"), inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


_D, _S = "Data columns", "Split"
_FRACTION = (0.0, 1.0, False, True)  # [0, 1)
DATA_PARAMS = [
    _opt("--user-col", str | None, None, "User id column. Default: user_id, or an alias (user, userId, query_id).", _D),
    _opt("--item-col", str | None, None, "Item id column. Default: item_id, or an alias (item, itemId, movieId).", _D),
    _opt("--weight-col", str | None, None, "Numeric weight column (e.g. a rating). Rows below --min-weight are dropped.", _D),
    _opt("--min-weight", float | None, None, "Keep rows whose weight is >= this (default: weight > 0). Needs --weight-col.",
         _D, real=(None, None, False, False)),
    _opt("--time-col", str | None, None, "Time column (numbers or dates); enables --split temporal.", _D),
    _opt("--item-group-col", str | None, None, "Item group column for folding metrics. Default: item_group if present; '' for none.", _D),
    _opt("--user-group-col", str | None, None, "User group column. Default: user_group if present, else each user's majority item group.", _D),
    _opt("--user-features", str, "", "Comma-separated categorical user-feature columns, constant per user (e.g. country,age_band).", _D),
    _opt("--sep", str, ",", "Field delimiter: one character, or tab, comma, semicolon, pipe, space.", _D),
    _opt("--user-file", Path | None, None, "Side table with one row per user (id column + features, user group), "
         "joined on the user id; --user-features and --user-group-col may name its columns.", _D),
    _opt("--item-file", Path | None, None, "Side table with one row per item (id column + item group), joined on "
         "the item id; --item-group-col may name its columns.", _D),
    _opt("--seed", int, 42, "Seed of the split and of every model's random choices.", _S, min=0, max=MAX_SEED),
    _opt("--cold-users", float, 0.1, "Fraction of users held out entirely as cold users (seeded hash of the user id).",
         _S, real=_FRACTION),
    _opt("--test-frac", float, 0.2, "Fraction of each warm user's interactions held out for testing.", _S,
         real=_FRACTION),
    _opt("--valid-frac", float, 0.1, "Fraction of each warm user's interactions held out for validation (early "
         "stopping); --test-frac + --valid-frac < 1.", _S, real=_FRACTION),
    _opt("--split", str, "random", "Warm holdout: 'random' (seeded hash) or 'temporal' (latest interactions; needs --time-col).", _S),
    _opt("--revealed", str, "0,1,3,5", "Cold users' revealed-history counts r to evaluate, comma-separated integers >= 0.", _S),
    _opt("--test", Path | None, None, "Explicit held-out CSV (same columns) instead of the random holdout; "
         "users only in it are the cold users.", _S),
]
DATA_NAMES = [p.name for p in DATA_PARAMS]


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise MfvsdnnError(f"{option} expects comma-separated integers, got {text!r}") from None


def _data_options(kw: dict[str, Any]) -> DataOptions:
    """The shared options as objects; every check that needs no data happens here."""
    parse_sep(kw["sep"])
    cols = ColumnSpec(
        user_col=kw["user_col"], item_col=kw["item_col"], weight_col=kw["weight_col"],
        min_weight=kw["min_weight"], time_col=kw["time_col"], item_group_col=kw["item_group_col"],
        user_group_col=kw["user_group_col"],
        user_features=tuple(f.strip() for f in kw["user_features"].split(",") if f.strip()), sep=kw["sep"],
        user_file=str(kw["user_file"]) if kw["user_file"] else None,
        item_file=str(kw["item_file"]) if kw["item_file"] else None,
    )
    split = SplitConfig(seed=kw["seed"], cold_users=kw["cold_users"], test_frac=kw["test_frac"],
                        valid_frac=kw["valid_frac"], strategy=kw["split"],
                        revealed=_int_list(kw["revealed"], "--revealed"))
    return DataOptions(cols, split, kw["test"])


def with_data_options(func: Any) -> Any:
    """Add the shared data and split options to a command; it receives them as ``opts: DataOptions``."""
    sig = inspect.signature(func, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "opts"]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        data_kw = {k: kwargs.pop(k) for k in DATA_NAMES}
        return func(*args, opts=_data_options(data_kw), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + DATA_PARAMS)  # type: ignore[attr-defined]
    return wrapper


# ---------------------------------------------------------------------------------------------
# --config FILE: any command's options from a TOML file, fed in as click defaults so that the
# command line wins and every check of an option applies to its config value too


def _config_slots(group: Any) -> dict[str, dict[str, OptionSlot]]:
    """Every command's config keys (its options' names without dashes) and the parameters they fill."""
    out = {}
    for name, command in group.commands.items():
        slots = {}
        for param in command.params:
            if param.param_type_name != "option" or param.name in ("help", "config"):
                continue
            for opt in param.opts:
                slots[key_name(opt)] = OptionSlot(param.name, bool(param.multiple))
        out[name] = slots
    return out


def _load_config(ctx: typer.Context, value: Path | None) -> Path | None:
    if value is None:
        return None
    values = command_values(read_config(value), ctx.info_name, _config_slots(ctx.parent.command), value)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


CONFIG_PARAM = inspect.Parameter(
    "config", inspect.Parameter.KEYWORD_ONLY, default=None,
    annotation=Annotated[Path | None, typer.Option(
        "--config", help="TOML file of this command's options: a shared top level and a [command] table, keys "
        "= option names without dashes (see README: config files). Options typed here win; every value is "
        "checked as if typed. Reports record it expanded into explicit options.", is_eager=True,
        callback=_load_config, show_default=False, rich_help_panel="Config")])


def with_config(func: Any) -> Any:
    """Add ``--config FILE`` to a command (the values are applied while parsing; the command never sees it)."""
    sig = inspect.signature(func, eval_str=True)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("config", None)
        return func(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), CONFIG_PARAM])  # type: ignore[attr-defined]
    return wrapper


#: a run's recorded split setting whose option has another name
_RUN_KEY_OPTION = {"strategy": "split"}
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT_MAP)


def _runs_data_options(runs: dict[str, Path], opts: DataOptions) -> tuple[DataOptions, dict[str, Any]]:
    """The data and split options of loaded runs, for every such option the user did not give.

    Returns the options to use and the ones taken from the runs that differ from the defaults (for the
    reproduction line). A given option is kept as given: if it differs from the runs', the fingerprint
    check refuses the runs and names it.
    """
    from .models.store import read_meta

    ctx = get_current_context()
    not_given = [n for n in DATA_NAMES if ctx.get_parameter_source(n) not in _GIVEN]
    if not runs or not not_given:
        return opts, {}
    name, path = next(iter(runs.items()))
    recorded = read_meta(path)["split"]
    values = {}
    for key, value in {**recorded.get("columns", {}), **recorded.get("config", {})}.items():
        option = _RUN_KEY_OPTION.get(key, key)
        if option in not_given:
            values[option] = ",".join(map(str, value)) if isinstance(value, list) else value
    kw = {n: ctx.params[n] for n in DATA_NAMES} | values
    changed = {n: v for n, v in values.items() if v != ctx.params[n]}
    params = {p.name: p for p in ctx.command.params}
    shown = " ".join(shlex.join(_option_tokens(params[n], v)) for n, v in changed.items()) or "the defaults"
    _info(f"using the data and split options of the runs ({name} {path}): {escape(shown)}")
    return _data_options(kw), changed


DataArg = Annotated[Path, typer.Argument(help="Interaction CSV with a header row (see README: input contract).",
                                         show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _print_json(obj: Any) -> None:
    from .models.store import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


# ---------------------------------------------------------------------------------------------
# commands


@app.command()
@with_config
@with_data_options
def info(data: DataArg, json_out: JsonOpt = False, *, opts: DataOptions) -> None:
    """Summarise an interaction CSV: sizes, density, groups and natural cross-group rate, features, split."""
    summary = api.info(data, opts.columns, opts.split, opts.test)
    if json_out:
        _print_json(summary)
    else:
        terminal.render_info(summary, out_console)


@app.command("make-data")
@with_config
def make_data(
    out: Annotated[Path, typer.Argument(help="CSV file to write (replaced atomically).", show_default=False)],
    users: Annotated[int, typer.Option(help="Number of users.", min=1, max=MAX_USERS)] = 3000,
    items: Annotated[int, typer.Option(help="Number of items (>= --groups).", min=3, max=MAX_ITEMS)] = 1000,
    groups: Annotated[int, typer.Option(help="Number of groups (think languages); users and items each belong to "
                                        "one.", min=1, max=MAX_GROUPS)] = 4,
    cross_rate: Annotated[float, typer.Option(help="Fraction of each user's interactions outside their group "
                                              "(0 when --groups 1).", min=0.0, max=1.0)] = 0.05,
    mean_interactions: Annotated[float, typer.Option(help="Mean interactions per user (at least 3 each).",
                                                     min=3.0, max=MAX_MEAN_INTERACTIONS)] = 20.0,
    taste_dim: Annotated[int, typer.Option(help="Latent taste dimension within groups.", min=1,
                                           max=MAX_TASTE_DIM)] = 8,
    zipf: Annotated[float, typer.Option(help="Zipf exponent of item popularity within a group (0 = none).",
                                        min=0.0, max=MAX_ZIPF)] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same file.", min=0,
                                      max=MAX_SEED)] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT even if it is not a file "
                                            "make-data wrote.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write grouped synthetic interactions (user_id,item_id,user_group,item_group,country,age_band)."""
    cfg = SyntheticConfig(users=users, items=items, groups=groups, cross_rate=cross_rate,
                          mean_interactions=mean_interactions, taste_dim=taste_dim, zipf=zipf, seed=seed)
    try:
        cfg.validate()  # before anything is generated or written
    except ValueError as e:
        raise MfvsdnnError(str(e)) from None
    rows = users * min(mean_interactions, items)
    check_memory(f"make-data ({users:,} users x about {min(mean_interactions, items):g} interactions)",
                 int(SYNTHETIC_BYTES_PER_ROW * rows), "lower --users or --mean-interactions")
    summary = api.make_data(out, cfg, overwrite=overwrite)
    if json_out:
        _print_json(summary)
    else:
        terminal.render_make_data(summary, str(out), out_console)


# ---------------------------------------------------------------------------------------------
# train-wals and recommend


@app.command("train-wals")
@with_config
@with_data_options
def train_wals(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Run directory to write (model.json, model.npz, data.npz); "
                                      "replaced atomically.")] = Path("runs/wals"),
    factors: Annotated[int, typer.Option(help="Embedding dimension d of users and items.", min=1,
                                         max=MAX_DIM)] = 32,
    w0: Annotated[float, _real("Weight of every unobserved (user, item) pair; 0 ignores unobserved pairs and "
                               "shows folding.", 0.0, 1.0, hi_open=True)] = 0.1,
    reg: Annotated[float, _real("L2 regularisation of U and V (implicit's regularization = reg/w0).", 0.0, MAX_REG,
                                lo_open=True)] = 1.0,
    iterations: Annotated[int, typer.Option(help="Alternating iterations (items, then users).", min=1,
                                            max=MAX_ITERATIONS)] = 15,
    solver: Annotated[str, typer.Option(help="Row solver: 'cg' (conjugate gradient, warm-started) or "
                                        "'cholesky' (exact).")] = "cg",
    cg_steps: Annotated[int, typer.Option(help="Conjugate-gradient steps per row and half-iteration (solver cg).",
                                          min=1, max=MAX_CG_STEPS)] = 3,
    threads: Annotated[int, typer.Option(help="Threads for the solver kernels; 0 = all cores. "
                                         "Results do not depend on it.", min=0, max=MAX_THREADS)] = 0,
    min_support: Annotated[int, typer.Option(help="Cold start: fewest training users a feature combination needs "
                                             "before its mean embedding is used (else back off).", min=1)] = 5,
    fold_in_prior: Annotated[float, _real("Cold start with a history: MAP fold-in weight pulling a new query's "
                                          "row solve toward its feature-mean embedding (0 = plain fold-in, which "
                                          "ignores the features; compare chooses one on validation).", 0.0,
                                          MAX_FOLD_IN_PRIOR)] = 0.0,
    engine: Annotated[str, typer.Option(help="'local' (this machine) or 'spark' (Spark MLlib implicit ALS with "
                                        "alpha = 1/w0 - 1; needs pip install 'mfvsdnn\\[spark]' and Java 17+).",
                                        rich_help_panel="Engine")] = "local",
    spark_master: Annotated[str, typer.Option(help="Spark master: local[*], local[N], spark://host:port, yarn, "
                                              "k8s://... (--engine spark).", rich_help_panel="Engine")] = "local[*]",
    spark_conf: Annotated[list[str] | None, typer.Option(help="Spark setting KEY=VALUE, repeatable (e.g. "
                                                         "spark.driver.memory=8g).", rich_help_panel="Engine")] = None,
    spark_reader: Annotated[str, typer.Option(help="Who parses DATA with --engine spark: 'auto' (pandas for local "
                                              "CSV files up to 2 GiB, else Spark), 'pandas' or 'spark'.",
                                              rich_help_panel="Engine")] = "auto",
    spark_reg_param: Annotated[float | None, _real("Spark regParam as given, instead of the mapping "
                                                   "reg*(users+items)/(2*w0*nnz).", 0.0,
                                                   rich_help_panel="Engine")] = None,
    json_out: JsonOpt = False,
    *,
    opts: DataOptions,
) -> None:
    """Train WALS (weighted ALS with unobserved weight w0) on DATA and save the run to --out."""
    from .models.wals import WALS

    params = {"factors": factors, "w0": w0, "reg": reg, "iterations": iterations, "solver": solver,
              "cg_steps": cg_steps, "num_threads": threads, "min_support": min_support, "fold_in_prior": fold_in_prior}
    WALS(**params)  # validates every option before the data is read
    if engine not in ("local", "spark"):
        raise MfvsdnnError(f"--engine must be 'local' or 'spark', got {engine!r}")
    if engine == "spark":
        from .engines import spark as spark_engine

        conf = spark_engine.parse_conf(spark_conf)
        spark_engine.spark_alpha(w0)  # refuse w0 outside Spark before anything starts
        with _progress("WALS on Spark") as bar:
            result = api.train_wals_spark(
                spark_engine.restore_uri(data), opts.columns, opts.split, opts.test, params, out,
                master=spark_master, conf=conf, reader=spark_reader,
                reg_param=spark_reg_param, progress=bar)
        if json_out:
            _print_json(result.summary)
        else:
            terminal.render_train(result.summary, out_console)
            terminal.render_spark_train(result.summary, out_console)
        return
    with _progress("WALS") as bar:
        result = api.train_from_csv("wals", data, opts.columns, opts.split, opts.test, params, out, bar)
    if json_out:
        _print_json(result.summary)
    else:
        terminal.render_train(result.summary, out_console)
        terminal.render_objective(result.summary, out_console)
        _print_notes(result.summary)


def _print_notes(summary: dict) -> None:
    for note in summary.get("notes", []):
        out_console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


def _parse_features(pairs: list[str]) -> dict[str, str]:
    feats: dict[str, str] = {}
    for p in pairs:
        name, sep_, value = p.partition("=")
        if not sep_ or not name.strip():
            raise MfvsdnnError(f"--feature expects NAME=VALUE, got {p!r}")
        feats[name.strip()] = value.strip()
    return feats


@app.command()
@with_config
def recommend(
    run: Annotated[Path, typer.Argument(help="Run directory written by train-wals or train-softmax.",
                                        show_default=False)],
    user: Annotated[str | None, typer.Option("--user", help="Recommend for this user id of the run's data "
                                             "(items the user already has are excluded).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Write recommendations for every training user "
                                            "to --out as user_id,item_id,rank,score.")] = False,
    history: Annotated[str | None, typer.Option("--history", help="New user: comma-separated item ids they "
                                                "interacted with (folded in; excluded from the results).")] = None,
    feature: Annotated[list[str] | None, typer.Option("--feature", metavar="NAME=VALUE", help="New user: a "
                                                      "feature; repeat for several. Softmax runs: it joins the "
                                                      "history in the query tower. WALS runs: used when --history "
                                                      "is empty; with a history only if the run's fold_in_prior "
                                                      "> 0 (MAP fold-in); a note says which.")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of items to recommend per user.", min=1, max=MAX_K)] = 10,
    out: Annotated[Path | None, typer.Option("--out", help="CSV file for --all (written atomically).")] = None,
    index: Annotated[str, typer.Option("--index", help="Serve by exact search over every item, or from an "
                                       "approximate index: exact, hnsw or ivf (needs mfvsdnn\\[ann]; built on "
                                       "first use and stored in RUN, rebuilt when the item vectors change).")]
    = "exact",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --all: replace --out even if it is not "
                                            "a file recommend wrote.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Top-k items for a known user (--user), every training user (--all --out), or a new user
    (--history and/or --feature: the cold-start path a serving system needs)."""
    from .models.index import check_kind

    check_kind(index)
    new_user = history is not None or bool(feature)
    modes = [m for m, on in (("--user", user is not None), ("--all", all_users),
                             ("--history/--feature", new_user)) if on]
    if len(modes) != 1:
        raise MfvsdnnError("choose exactly one of --user ID, --all (with --out FILE), or --history/--feature "
                           f"for a new user{' (got ' + ' and '.join(modes) + ')' if modes else ''}")
    if all_users:
        if out is None:
            raise MfvsdnnError("--all needs --out FILE (the CSV to write)")
        with _progress("recommend") as bar:
            summary = api.recommend_all(run, k, out, bar, overwrite=overwrite, index=index)
        if json_out:
            _print_json(summary)
        else:
            terminal.render_recommend_all(summary, out_console)
        return
    if out is not None:
        raise MfvsdnnError("--out is only used with --all")
    if user is not None:
        result = api.recommend_user(run, user, k, index=index)
    else:
        hist = [h for h in (history or "").split(",") if h.strip()]
        result = api.recommend_new(run, hist, _parse_features(feature or []), k, index=index)
    if json_out:
        _print_json(result)
    else:
        terminal.render_recommendations(result, out_console)


def _keys(kind: str) -> str:
    return ", ".join(HYPER_PARAMETERS[kind])


def _k_list(text: str) -> tuple[int, ...]:
    """--k: comma-separated cut-offs, each in [1, MAX_K]."""
    ks = _int_list(text, "--k")
    if not ks or any(not 1 <= k <= MAX_K for k in ks):
        raise MfvsdnnError(f"--k expects comma-separated integers in [1, {MAX_K:,}], got {text!r}")
    return ks


def _key_values(items: list[str] | None, option: str) -> dict[str, Any]:
    """KEY=VALUE strings -> dict; values parsed as JSON where possible (numbers, true/false), else text."""
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise MfvsdnnError(f"{option} expects KEY=VALUE, got {it!r}")
        key, val = it.split("=", 1)
        try:
            out[key.strip().replace("-", "_")] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = val
    return out


@app.command()
@with_config
@with_data_options
def compare(
    data: DataArg,
    models: Annotated[str, typer.Option("--models", help="Models to compare, comma-separated registry kinds: "
                                        "wals, softmax, popularity, group-popularity, random. The first matrix "
                                        "factorization and the first DNN are contrasted head to head.",
                                        rich_help_panel="Models")] = "wals,softmax",
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Leave out the reference rows (most-popular, "
                                               "most-popular within the user's group, random) that every compare "
                                               "reports by default.", rich_help_panel="Models")] = False,
    wals: Annotated[Path | None, typer.Option("--wals", help="Load this WALS run directory instead of training one.",
                                              rich_help_panel="Models")] = None,
    softmax: Annotated[Path | None, typer.Option("--softmax", help="Load this softmax DNN run directory instead of "
                                                 "training one.", rich_help_panel="Models")] = None,
    report_dir: Annotated[Path, typer.Option(help="Where report.json, report.md and report.html are written.",
                                             rich_help_panel="Output")] = Path("reports"),
    runs_dir: Annotated[Path | None, typer.Option(help="Where models trained here are saved (default: "
                                                  "REPORT_DIR/runs; reuse them with --wals/--softmax).",
                                                  rich_help_panel="Output")] = None,
    k: Annotated[str, typer.Option("--k", help=f"Cut-offs k, comma-separated integers in [1, {MAX_K:,}]; every "
                                   "metric at each.", rich_help_panel="Evaluation")] = "10,20,50",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples over users for the 95% intervals and the "
                                           "paired test (0 = none).", min=0, max=MAX_BOOTSTRAP,
                                           rich_help_panel="Evaluation")] = 1000,
    serving_sample: Annotated[int, typer.Option(help="Users timed one request at a time for p50/p99 latency.",
                                                min=1, max=MAX_SERVING_SAMPLE,
                                                rich_help_panel="Evaluation")] = 200,
    index: Annotated[str, typer.Option("--index", help="Also serve every model with item vectors from an "
                                       "approximate index and measure what it costs and loses against exact "
                                       "search: exact (no index), hnsw or ivf (needs mfvsdnn\\[ann]).",
                                       rich_help_panel="Serving")] = "exact",
    ef_search: Annotated[str, typer.Option("--ef-search", help="--index hnsw: efSearch values measured as the "
                                           "speed/accuracy curve, comma-separated, each in [1, 100,000] (the "
                                           "default 128 is always measured).", rich_help_panel="Serving")]
    = "32,64,128,256",
    nprobe: Annotated[str, typer.Option("--nprobe", help="--index ivf: inverted lists probed, comma-separated, "
                                        "each in [1, 100,000] (the default 8 is always measured).",
                                        rich_help_panel="Serving")] = "1,4,8,32",
    dim: Annotated[int | None, typer.Option(help="Embedding dimension of both models (WALS factors, DNN dim). "
                                            "Default: each model's own default.", min=1, max=MAX_DIM,
                                            rich_help_panel="Models")] = None,
    w0: Annotated[float | None, _real("WALS unobserved weight w0 (default: the model's, 0.1).", 0.0, 1.0,
                                      hi_open=True, rich_help_panel="Models")] = None,
    negatives: Annotated[str | None, typer.Option(help="Softmax DNN negatives: 'all', N > 0 sampled, or 0 "
                                                  f"(default: the model's, 50; N <= {MAX_NEGATIVES:,}).",
                                                  rich_help_panel="Models")] = None,
    wals_param: Annotated[list[str] | None, typer.Option(help="Any WALS hyper-parameter as KEY=VALUE "
                                                         "(repeatable), e.g. iterations=10. Keys: "
                                                         f"{_keys('wals')}.", rich_help_panel="Models")] = None,
    softmax_param: Annotated[list[str] | None, typer.Option(help="Any softmax DNN hyper-parameter as KEY=VALUE "
                                                            "(repeatable), e.g. epochs=10. Keys: "
                                                            f"{_keys('softmax')}.",
                                                            rich_help_panel="Models")] = None,
    engine: Annotated[str, typer.Option(help="'local', or 'spark': DATA read by the Spark engine, WALS trained as "
                                        "Spark MLlib implicit ALS (unless --wals), the other models locally, "
                                        "scoring and top-k in Spark tasks; the same full report.",
                                        rich_help_panel="Engine")] = "local",
    spark_master: Annotated[str, typer.Option(help="Spark master (--engine spark): local[*], spark://host:port, "
                                              "yarn, ...", rich_help_panel="Engine")] = "local[*]",
    spark_conf: Annotated[list[str] | None, typer.Option(help="Spark setting KEY=VALUE, repeatable.",
                                                         rich_help_panel="Engine")] = None,
    spark_reader: Annotated[str, typer.Option(help="Who parses DATA with --engine spark: auto, pandas or spark.",
                                              rich_help_panel="Engine")] = "auto",
    pipeline: Annotated[list[str] | None, typer.Option(help="Two-stage pipeline RETRIEVER>SCORER of registry kinds "
                                                       "(quote it in a shell), e.g. 'wals>softmax'; repeatable or "
                                                       "comma-separated. The retriever's top N, re-scored by the "
                                                       "scorer, evaluated beside each stage alone.",
                                                       rich_help_panel="Pipelines")] = None,
    candidates: Annotated[str, typer.Option(help="N candidates the retriever passes on, comma-separated integers "
                                            f"in [1, {api.MAX_CANDIDATES:,}]; several = one pipeline per N.",
                                            rich_help_panel="Pipelines")] = "200",
    retriever_param: Annotated[list[str] | None, typer.Option(help="A pipeline retriever's own hyper-parameter "
                                                              "KEY=VALUE (repeatable; default: the compared model "
                                                              "of its kind, not retrained).",
                                                              rich_help_panel="Pipelines")] = None,
    scorer_param: Annotated[list[str] | None, typer.Option(help="A pipeline scorer's own hyper-parameter KEY=VALUE "
                                                           "(repeatable), e.g. negatives=0 for a positives-only DNN "
                                                           "(trained and reported alone too).",
                                                           rich_help_panel="Pipelines")] = None,
    repeats: Annotated[int, typer.Option(help="Model seeds per model: every model is retrained with this many "
                                         "seeds on the same split; intervals and paired tests combine seed and user "
                                         f"variance, and the between-seed spread is shown. In [1, {MAX_REPEATS}].",
                                         min=1, max=MAX_REPEATS, rich_help_panel="Fairness")] = 3,
    tune: Annotated[int, typer.Option(help="Random-search trials on validation per learned model (the same budget "
                                      "for WALS and the DNN; trial 1 is the given parameters; 1 = no tuning). "
                                      f"In [1, {MAX_TUNE}].", min=1, max=MAX_TUNE,
                                      rich_help_panel="Fairness")] = 4,
    folding_contrasts: Annotated[bool, typer.Option("--folding-contrasts/--no-folding-contrasts",
                                                    help="Also train WALS at w0 = 0 and the DNN without negatives "
                                                    "on the same split (data with item groups only), so the "
                                                    "folding verdict tests the contrast its claim names.",
                                                    rich_help_panel="Fairness")] = True,
    map_fold_in: Annotated[bool, typer.Option("--map-fold-in/--no-map-fold-in",
                                              help="Also report WALS with the MAP fold-in for cold users (a prior "
                                              "toward the feature-mean embedding, its weight chosen on "
                                              "validation).", rich_help_panel="Fairness")] = True,
    growth_repeats: Annotated[int, typer.Option(help="Timed fits per subsample (1/8, 1/4, 1/2, 1 of the training "
                                                "users) for the training growth exponents (median; 0 = not "
                                                "measured). In [0, 10].", min=0, max=10,
                                                rich_help_panel="Fairness")] = 3,
    per_user: Annotated[str | None, typer.Option(help="Also write every per-user metric value (model, seed, "
                                                 "population, user id, metric, k, value) as this file inside "
                                                 "--report-dir: a name ending .csv or .parquet.",
                                                 rich_help_panel="Output")] = None,
    json_out: JsonOpt = False,
    *,
    opts: DataOptions,
) -> None:
    """Train (or load) WALS and the softmax DNN on one split and compare them along the five trade-off axes.

    Prints the verdict table and writes report.json, report.md and a self-contained report.html.
    """
    from .experiment.per_user import check_name
    from .models.softmax.model import parse_negatives

    check_name(per_user)
    params = {"wals": _key_values(wals_param, "--wals-param"), "softmax": _key_values(softmax_param, "--softmax-param")}
    for kind, given in params.items():  # what the user typed, checked before --dim/--w0/--negatives join it
        check_params(kind, given, f"--{kind}-param")
    if negatives is not None:
        parse_negatives(negatives)
    ks = _k_list(k)
    from .experiment.spec import MAX_SEARCH_SETTING, check_index

    index_settings = {}
    for kind_, option, text in (("hnsw", "--ef-search", ef_search), ("ivf", "--nprobe", nprobe)):
        values = _int_list(text, option)
        if not values or any(not 1 <= v <= MAX_SEARCH_SETTING for v in values):
            raise MfvsdnnError(f"{option} expects comma-separated integers in [1, {MAX_SEARCH_SETTING:,}], "
                               f"got {text!r}")
        index_settings[kind_] = values
    check_index(index, ())
    kinds = _str_list(models)
    pipes = api.pipeline_specs(pipeline or [], _int_list(candidates, "--candidates"), _key_values(retriever_param, "--retriever-param"),
                               _key_values(scorer_param, "--scorer-param"))
    if dim is not None:
        params["wals"].setdefault("factors", dim)
        params["softmax"].setdefault("dim", dim)
    if w0 is not None:
        params["wals"]["w0"] = w0
    if negatives is not None:
        params["softmax"]["negatives"] = negatives
    given = {kind for kind, p in (("wals", wals_param), ("softmax", softmax_param)) if p}
    params = {kind: p for kind, p in params.items() if p and (kind in kinds or kind in given)}
    if engine not in ("local", "spark"):
        raise MfvsdnnError(f"--engine must be 'local' or 'spark', got {engine!r}")
    spark_options: dict[str, Any] = {}
    if engine == "spark":
        from .engines import spark as spark_engine

        data = spark_engine.restore_uri(data)
        spark_options = {"spark_master": spark_master, "spark_conf": spark_engine.parse_conf(spark_conf),
                         "spark_reader": spark_reader}
    runs = {kind: path for kind, path in (("wals", wals), ("softmax", softmax)) if path is not None}
    opts, from_runs = _runs_data_options(runs, opts)
    result = api.compare(
        data, opts.columns, opts.split, opts.test, models=kinds, baselines=not no_baselines, runs=runs,
        params=params, ks=ks, n_boot=bootstrap, report_dir=report_dir, runs_dir=runs_dir,
        serving_sample=serving_sample, index=index, index_settings=index_settings.get(index, ()),
        progress_factory=_progress, command=command_line(from_runs), engine=engine, pipelines=pipes,
        repeats=repeats, tune=tune, folding_contrasts=folding_contrasts, map_fold_in=map_fold_in,
        growth_repeats=growth_repeats, per_user=per_user, **spark_options,
    )
    if json_out:
        _print_json(result.report)
    else:
        terminal.render_compare(result.results, out_console, result.paths)


# ---------------------------------------------------------------------------------------------
# train-softmax

_SM = "Softmax DNN"


@app.command("train-softmax")
@with_config
@with_data_options
def train_softmax(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Run directory to write (model.json, model.npz, data.npz); "
                                      "replaced atomically.", rich_help_panel=_SM)] = Path("runs/softmax"),
    negatives: Annotated[str, typer.Option(help="'all' = full softmax; N > 0 = sampled softmax with N negatives "
                                           "shared by each mini-batch; 0 = positives only (logistic loss on "
                                           f"positive pairs: folds groups together). N <= {MAX_NEGATIVES:,}.",
                                           rich_help_panel=_SM)] = "50",
    sampler: Annotated[str, typer.Option(help="Negative sampler for N > 0: 'uniform', 'popularity' (with logQ "
                                         "correction), 'hard' (each example picks its N highest-scoring "
                                         "from a uniform pool of --hard-pool), 'in-batch' (the batch's other "
                                         "targets, logQ-corrected; N is not used) or 'mixed' (in-batch plus N "
                                         "from the --mix-sampler pool). The user's training positives are never "
                                         "negatives.", rich_help_panel=_SM)] = "uniform",
    mix_sampler: Annotated[str, typer.Option(help="Pool of --sampler mixed: 'uniform' or 'popularity'.",
                                             rich_help_panel=_SM)] = "uniform",
    hard_pool: Annotated[int, typer.Option(help="Pool size per mini-batch for --sampler hard; must be >= "
                                           "--negatives; a pool larger than the catalogue is the whole catalogue.",
                                           min=1, max=MAX_HARD_POOL, rich_help_panel=_SM)] = 500,
    gravity: Annotated[float, _real("Gravity weight g: adds g*mean_b psi_b^T (V^T V / n) psi_b, pushing all "
                                    "scores towards 0.", 0.0, rich_help_panel=_SM)] = 0.0,
    dim: Annotated[int, typer.Option(help="Embedding dimension d (query output psi and item embeddings V).",
                                     min=1, max=MAX_DIM, rich_help_panel=_SM)] = 32,
    hidden: Annotated[str, typer.Option(help=f"ReLU hidden layer widths, comma-separated, each in [1, {MAX_WIDTH}] "
                                        f"(at most {MAX_LAYERS} layers); '' = no hidden layer.",
                                        rich_help_panel=_SM)] = "64",
    feature_dim: Annotated[int, typer.Option(help="Embedding size of each user feature.", min=1, max=MAX_DIM,
                                             rich_help_panel=_SM)] = 8,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (passes over the training pairs).", min=1,
                                        max=MAX_EPOCHS, rich_help_panel=_SM)] = 30,
    batch_size: Annotated[int, typer.Option(help="Training examples per mini-batch.", min=1, max=MAX_BATCH,
                                            rich_help_panel=_SM)] = 256,
    lr: Annotated[float, _real("Learning rate (Adam and Adagrad move a weight by about lr per step).", 0.0, MAX_LR,
                               lo_open=True, rich_help_panel=_SM)] = 0.002,
    optimizer: Annotated[str, typer.Option(help="'adam' (lazy Adam on embedding rows) or 'adagrad'.",
                                           rich_help_panel=_SM)] = "adam",
    l2: Annotated[float, _real("L2 weight on the weights and on the embedding rows each step touches.", 0.0,
                               rich_help_panel=_SM)] = 0.0,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation "
                                          "recall@20 (0 = run all epochs); the best epoch is kept.", min=0,
                                          max=MAX_EPOCHS, rich_help_panel=_SM)] = 3,
    tie_embeddings: Annotated[bool, typer.Option("--tie-embeddings", help="Use the output item embeddings V as "
                                                 "the input (history) embeddings too.", rich_help_panel=_SM)] = False,
    history_dropout: Annotated[float, _real("Fraction of training examples whose history is dropped, so the "
                                            "empty-history (features-only) path is learned.", 0.0, 1.0,
                                            hi_open=True, rich_help_panel=_SM)] = 0.1,
    item_buckets: Annotated[int, typer.Option(help="Hashing trick: rows of the input item table (each item is "
                                              "the sum of --item-hashes rows picked by a seeded hash of its raw "
                                              "id); 0 = one row per item.", min=0, max=MAX_BUCKETS,
                                              rich_help_panel=_SM)] = 0,
    item_hashes: Annotated[int, typer.Option(help="Hash functions per hashed item (rows summed).", min=1,
                                             max=MAX_HASHES, rich_help_panel=_SM)] = 2,
    hash_output: Annotated[bool, typer.Option("--hash-output", help="Hash the output item table into "
                                              "--item-buckets rows too.", rich_help_panel=_SM)] = False,
    feature_buckets: Annotated[int, typer.Option(help="Hash each user feature with more values than this into "
                                                 "this many rows (plus the unknown row); 0 = no hashing.", min=0,
                                                 max=MAX_BUCKETS, rich_help_panel=_SM)] = 0,
    json_out: JsonOpt = False,
    *,
    opts: DataOptions,
) -> None:
    """Train the softmax DNN (query tower over history + user features) on DATA and save the run to --out."""
    from .models.softmax import SoftmaxDNN

    params = {"negatives": negatives, "sampler": sampler, "hard_pool": hard_pool, "gravity": gravity, "dim": dim,
              "hidden": hidden, "feature_dim": feature_dim, "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "optimizer": optimizer, "l2": l2, "patience": patience, "tie_embeddings": tie_embeddings,
              "history_dropout": history_dropout, "mix_sampler": mix_sampler, "item_buckets": item_buckets,
              "item_hashes": item_hashes, "hash_output": hash_output, "feature_buckets": feature_buckets}
    params = SoftmaxDNN(**params).get_params()  # validates every option before the data is read
    with _progress("softmax DNN") as bar:
        result = api.train_from_csv("softmax", data, opts.columns, opts.split, opts.test, params, out, bar)
    restored = terminal.best_epoch_line(result.summary)
    if restored:
        _info(restored)
    if json_out:
        _print_json(result.summary)
    else:
        terminal.render_train(result.summary, out_console)
        _print_notes(result.summary)


# ---------------------------------------------------------------------------------------------
# sweep and scale


def _float_list(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise MfvsdnnError(f"{option} expects comma-separated numbers, got {text!r}") from None


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


_SW = "Sweep"


@app.command()
@with_config
@with_data_options
def sweep(
    data: DataArg,
    w0: Annotated[str, typer.Option(help="WALS unobserved weights to try, comma-separated, each in [0, 1) "
                                    "('' skips WALS).", rich_help_panel=_SW)] = "0,0.001,0.01,0.1,0.5",
    negatives: Annotated[str, typer.Option(help="Softmax negatives to try: 0 (positives only), N sampled, 'all' "
                                           "(full softmax); '' skips.", rich_help_panel=_SW)] = "0,5,50,all",
    sampler: Annotated[str, typer.Option(help="Negative samplers to try at --sampler-negatives: uniform, "
                                         "popularity (logQ-corrected), hard, in-batch, mixed; '' skips.",
                                         rich_help_panel=_SW)] = "uniform,popularity,hard",
    gravity: Annotated[str, typer.Option(help="Gravity weights g to try at --gravity-negatives, each finite "
                                         ">= 0; '' skips.", rich_help_panel=_SW)] = "0,0.1,1",
    item_buckets: Annotated[str, typer.Option(help="Hashed input-item table sizes to try at --sampler-negatives "
                                              "uniform negatives, comma-separated integers in "
                                              f"[0, {MAX_BUCKETS:,}] (0 = unhashed); '' skips.",
                                              rich_help_panel=_SW)] = "",
    hash_output: Annotated[bool, typer.Option("--hash-output", help="The --item-buckets points (except 0) hash "
                                              "the output item table too.", rich_help_panel=_SW)] = False,
    sampler_negatives: Annotated[int, typer.Option(help="Negatives used by the sampler and item-buckets families.", min=1,
                                                   max=MAX_NEGATIVES, rich_help_panel=_SW)] = 50,
    gravity_negatives: Annotated[str, typer.Option(help="Negatives used by the gravity family (0 shows gravity "
                                                   "alone against folding).", rich_help_panel=_SW)] = "0",
    wals_param: Annotated[list[str] | None, typer.Option(help="Fixed WALS hyper-parameter for every WALS point, "
                                                         "KEY=VALUE (repeatable; not w0, which is swept). Keys: "
                                                         f"{_keys('wals')}.", rich_help_panel=_SW)] = None,
    softmax_param: Annotated[list[str] | None, typer.Option(help="Fixed softmax hyper-parameter for every softmax "
                                                            "point, KEY=VALUE (repeatable), e.g. epochs=10; not a "
                                                            "swept knob (negatives, sampler, gravity, item_buckets). Keys: "
                                                            f"{_keys('softmax')}.", rich_help_panel=_SW)] = None,
    k: Annotated[str, typer.Option("--k", help=f"Cut-offs k, comma-separated integers in [1, {MAX_K:,}].",
                                   rich_help_panel=_SW)] = "10,20,50",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples over users for each point's 95% intervals.",
                                           min=0, max=MAX_BOOTSTRAP, rich_help_panel=_SW)] = 200,
    jobs: Annotated[int, typer.Option(help="Points trained in parallel processes (each holds its own copy of "
                                      "the data; 1 = in this process with progress bars).", min=1, max=MAX_JOBS,
                                      rich_help_panel=_SW)] = 1,
    report_dir: Annotated[Path, typer.Option(help="Where sweep.json, sweep.md and sweep.html are written; a "
                                             "sweep.json already there on the same split is resumed.",
                                             rich_help_panel="Output")] = Path("reports/sweep"),
    json_out: JsonOpt = False,
    *,
    opts: DataOptions,
) -> None:
    """Trade-off curves: train and evaluate every knob value on one split (resumable)."""
    from .experiment.sweep import SweepConfig

    cfg = SweepConfig(w0=_float_list(w0, "--w0"), negatives=_str_list(negatives), sampler=_str_list(sampler),
                      gravity=_float_list(gravity, "--gravity"), item_buckets=_str_list(item_buckets), hash_output=hash_output,
                      sampler_negatives=sampler_negatives,
                      gravity_negatives=gravity_negatives, wals_params=_key_values(wals_param, "--wals-param"),
                      softmax_params=_key_values(softmax_param, "--softmax-param"), ks=_k_list(k),
                      bootstrap=bootstrap)
    with _progress("sweep points") as overall:
        doc, paths = api.sweep(data, opts.columns, opts.split, opts.test, cfg, report_dir, jobs=jobs,
                               progress_factory=_progress if jobs <= 1 else None,
                               on_point=lambda done, total, p: overall(done, total, {}), command=command_line())
    if json_out:
        _print_json(doc)
    else:
        from .report.curves import render_sweep

        render_sweep(doc, out_console, paths)


@app.command()
@with_config
def scale(
    sizes: Annotated[str, typer.Option(help="Catalogue sizes (items), comma-separated, at least two different, "
                                       f"each in [{MIN_SIZE}, {MAX_SIZE:,}]; users and interactions grow in "
                                       "proportion.")] = "1000,3000,10000,30000,100000",
    users_per_item: Annotated[float, _real("Users per item at every size.", 0.0, MAX_USERS_PER_ITEM,
                                           lo_open=True)] = 2.0,
    mean_interactions: Annotated[float, typer.Option(help="Mean interactions per user.", min=3.0,
                                                     max=MAX_MEAN_INTERACTIONS)] = 20.0,
    factors: Annotated[int, typer.Option(help="WALS factors and softmax dimension.", min=1, max=MAX_DIM)] = 32,
    negatives: Annotated[int, typer.Option(help="Negatives of the sampled softmax curve.", min=1,
                                           max=MAX_NEGATIVES)] = 50,
    examples_timed: Annotated[int, typer.Option(help="At most this many training examples are timed per softmax "
                                                "point and scaled to a full epoch.", min=1,
                                                max=MAX_EXAMPLES_TIMED)] = 60_000,
    latency_queries: Annotated[int, typer.Option(help="Single queries timed per model and size.", min=1,
                                                 max=MAX_LATENCY_QUERIES)] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data, split and models.", min=0,
                                      max=MAX_SEED)] = 0,
    index: Annotated[str, typer.Option("--index", help="Add the approximate-index curves: exact (none), hnsw "
                                       "or ivf (needs mfvsdnn\\[ann]): search latency of exact and the index "
                                       "on the WALS vectors, the index's recall@20 and build time.")] = "exact",
    report_dir: Annotated[Path, typer.Option(help="Where scale.json, scale.md and scale.html are written.")]
    = Path("reports/scale"),
    json_out: JsonOpt = False,
) -> None:
    """Training and serving cost against corpus size on grouped synthetic data, with growth exponents."""
    from .experiment.scale import ScaleConfig

    cfg = ScaleConfig(sizes=_int_list(sizes, "--sizes"), users_per_item=users_per_item,
                      mean_interactions=mean_interactions, factors=factors, negatives=negatives,
                      examples_timed=examples_timed, latency_queries=latency_queries, seed=seed, index=index)
    cfg.check_memory()  # before the progress bar starts
    with _progress("corpus sizes") as prog:
        doc, paths = api.scale(cfg, report_dir, prog, command=command_line())
    if json_out:
        _print_json(doc)
    else:
        from .report.curves import render_scale

        render_scale(doc, out_console, paths)


# ---------------------------------------------------------------------------------------------
# datasets: public data sets fetched into a cache and converted to the input contract

datasets_app = _Typer(cls=_Group, no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                           help="Public data sets (MovieLens, HetRec Last.fm): list them, fetch one as a CSV.")
app.add_typer(datasets_app, name="datasets")
DatasetDirOpt = Annotated[Path | None, typer.Option("--dir", help="Cache folder the data sets are kept in "
                                                    "(default: $MFVSDNN_DATA, else ~/.cache/mfvsdnn/datasets).",
                                                    show_default=False)]


@datasets_app.command("list")
def datasets_list(directory: DatasetDirOpt = None, json_out: JsonOpt = False) -> None:
    """Every data set fetch knows: size, licence, groups and features of its CSV, whether it is cached."""
    from .report import datasets as datasets_report

    doc = api.datasets_list(directory)
    _print_json(doc) if json_out else datasets_report.render_list(doc, out_console)


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Data set name (see 'mfvsdnn datasets list').", show_default=False)],
    directory: DatasetDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download (resumably), check the SHA-256, convert to the input CSV, and print the compare line."""
    from .report import datasets as datasets_report

    record = api.datasets_fetch(name, directory, progress_factory=datasets_report.download_bar,
                                on_terms=lambda entry: datasets_report.render_terms(entry, err_console),
                                on_trust=lambda sha: datasets_report.render_trust(sha, err_console))
    _print_json(record) if json_out else datasets_report.render_fetch(record, out_console)


if __name__ == "__main__":  # pragma: no cover - the console script is mfvsdnn.__main__:main
    app()

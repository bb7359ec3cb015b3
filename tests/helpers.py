"""Small assertions shared by the test files (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

from typer.testing import CliRunner

from mfvsdnn.cli import app

runner = CliRunner()

#: compare without the fairness machinery (one model seed, no tuning, no contrasts, no MAP variant, no
#: growth, no DNN step budget): for tests about something else, so they stay fast
QUICK_COMPARE = ["--repeats", "1", "--tune", "1", "--no-folding-contrasts", "--no-map-fold-in", "--growth-repeats", "0",
                 "--softmax-param", "min_steps=0"]


def cli_fails(args: list, *words: str) -> str:
    """Run the CLI; assert exit 1, no traceback and every word in the output. Returns the output."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    for w in words:
        assert w in res.output, (w, res.output)
    return res.output


def pairs(ds) -> set[tuple[str, str]]:
    """The dataset's (user id, item id) positives."""
    return {(ds.user_ids[u], ds.item_ids[i]) for u, i in zip(*ds.matrix.nonzero())}

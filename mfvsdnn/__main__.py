"""The ``mfvsdnn`` console script and ``python -m mfvsdnn``.

Importing the CLI takes about a second (pandas, scipy, typer); a Ctrl-C in that time would show a
traceback from deep inside an import. This entry function stays tiny and imports the CLI inside the
same handler the CLI itself uses: "Aborted" on stderr, exit status 130.
"""

import sys

from .core.errors import ABORTED_EXIT


def main() -> None:
    try:
        from .cli import app

        app()
    except KeyboardInterrupt:
        sys.stderr.write("Aborted\n")
        sys.exit(ABORTED_EXIT)


if __name__ == "__main__":
    main()

"""The ``flashdepth`` command line: a router over one module per subcommand.

Exit codes: 0 success, 2 bad input or usage, 1 internal error (or, for ``batch``, some inputs
failed), 130 interrupted (outputs finalised). User errors print one line; ``--debug`` shows the
traceback. Subcommand modules import nothing heavy at import time, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from flashdepth import __version__
from flashdepth.errors import FlashDepthError

from .common import UsageError, cli_message

#: subcommand -> module in flashdepth_cli.commands (each has HELP, DESCRIPTION, EXAMPLES,
#: add_arguments(parser) and main(args) -> exit code)
COMMANDS = ("demo", "run", "batch", "eval", "convert", "synth", "train", "bench", "export", "models")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashdepth", description="Streaming video depth estimation (FlashDepth, ICCV 2025).",
        epilog="Run `flashdepth COMMAND --help` for a command's options and examples.")
    parser.add_argument("--version", action="version", version=f"flashdepth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"flashdepth_cli.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                           epilog="examples:\n" + module.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.set_defaults(handler=module.main)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FlashDepthError, UsageError) as e:
        if args.debug:
            raise
        print(f"flashdepth: error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flashdepth: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        print(f"flashdepth: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""What the subcommands share: usage errors, the translation of library errors into flags,
progress display, and the device/precision options."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from flashdepth.config import PRECISIONS
from flashdepth.errors import (DeviceUnavailableError, FlashDepthError, MissingIndexError, OutputExistsError,
                               ServeAddressError, UnknownModelError, UnknownNameError)


class UsageError(FlashDepthError):
    """A command-line usage error, already worded in flags."""


#: the library's parameter names -> the command line's flags, for error messages
_FLAG_OF_KIND = {"output": "--save", "colour map": "--colormap", "model": "--model", "dataset": "DATASET",
                 "backend": "--backend"}


def cli_message(e: BaseException) -> str:
    """The library speaks in API terms; say the same in flags."""
    if isinstance(e, DeviceUnavailableError):
        return f"--device {e.requested} was asked for but {e.reason}; use --device cpu (or --device auto)"
    if isinstance(e, MissingIndexError):
        return e.worded("--recover-with {}")
    if isinstance(e, ServeAddressError):
        return f"--serve {e.host}:{e.port}: cannot serve there ({e.reason}); choose another port (--serve 0 picks a free one)"
    if isinstance(e, OutputExistsError):
        return f"{', '.join(e.paths)} already exist(s); pass --overwrite to replace them"
    if isinstance(e, UnknownNameError) and not isinstance(e, UnknownModelError) and e.kind in _FLAG_OF_KIND:
        return f"{_FLAG_OF_KIND[e.kind]}: unknown {e.kind} {e.name!r}; choose from {', '.join(e.choices)}"
    return str(e)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", choices=list(PRECISIONS),
                        help="compute precision (autocast below fp32); default bf16 on CUDA, fp32 elsewhere. "
                             "bf16 also runs on CPU (slower than fp32 on most CPUs without AMX)")


class Progress:
    """A tqdm bar on a terminal; elsewhere (logs, CI) one plain line every ``every`` seconds."""

    def __init__(self, total: Optional[int], unit: str = "frame", quiet: bool = False, every: float = 30.0):
        self.total, self.unit, self.quiet, self.every = total, unit, quiet, every
        self.bar = None
        self.count = 0
        self.start = self.last_line = time.perf_counter()
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if not self.quiet and now - self.last_line >= self.every:
            from tqdm import tqdm

            self.last_line = now
            print(tqdm.format_meter(self.count, self.total, now - self.start, unit=self.unit), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

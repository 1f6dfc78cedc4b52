"""Exception classes of flashdepth.

Every error a user can cause is one of these, with a one-line message in API terms (parameter
names, not command-line flags) that names the offending value and says what to do. Errors that
the command line words differently carry the values it needs as attributes; the CLI prints
``str(error)`` for the rest and exits with code 2.
"""

from __future__ import annotations

from typing import Mapping, Sequence, TypeVar

T = TypeVar("T")


class FlashDepthError(Exception):
    """Base class of every error flashdepth raises on purpose."""


class ConfigError(FlashDepthError, ValueError):
    """A model or training configuration is invalid (unknown key, wrong type, bad value)."""


class OptionValueError(ConfigError):
    """An option's value is out of its range: ``name`` (the parameter's name) and ``value`` let the
    command line name its flag; ``requirement`` says what to give."""

    def __init__(self, name: str, value: object, requirement: str):
        self.name, self.value, self.requirement = name, value, requirement
        super().__init__(f"{name}={value!r}: {requirement}")


class UnknownNameError(FlashDepthError, KeyError):
    """A name is not in one of the package's tables (models, outputs, datasets, backends, ...)."""

    def __init__(self, kind: str, name: str, choices: Sequence[str]):
        self.kind, self.name, self.choices = kind, name, tuple(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or an :class:`UnknownNameError` naming the ``kind`` and the valid names: the
    one way every table of the package (backends, runtimes, datasets, alignments, ...) is read."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(kind, name, list(table)) from None


class UnknownModelError(UnknownNameError):
    """A model name is not in the registry."""

    def __init__(self, name: str, choices: Sequence[str]):
        super().__init__("model", name, choices)


class CheckpointError(FlashDepthError, ValueError):
    """A file is not a readable checkpoint, or its tensors do not fit the model."""


class WeightsNotFoundError(FlashDepthError, FileNotFoundError):
    """Published weights could not be found locally nor downloaded."""


class DeviceUnavailableError(FlashDepthError, RuntimeError):
    """The requested device does not exist on this machine."""

    def __init__(self, requested: str, reason: str):
        self.requested, self.reason = requested, reason
        super().__init__(f"device={requested!r} was requested but {reason}; use device='cpu' (or 'auto')")


class InputShapeError(FlashDepthError, ValueError):
    """A frame tensor has the wrong rank, channel count or size for the model."""


class StreamStateError(FlashDepthError, ValueError):
    """A stream state does not belong to this model or this stream."""


class FrameSizeChangedError(StreamStateError):
    """A frame of a stream has another size than the stream's first frame."""

    def __init__(self, index: int, size: tuple[int, int], expected: tuple[int, int]):
        self.index, self.size, self.expected = index, tuple(size), tuple(expected)
        super().__init__(f"frame {index} is {size[0]}x{size[1]} but the stream started at {expected[0]}x{expected[1]}; "
                         "a stream keeps one frame size: call reset() before a frame of a new size")


class InputValueError(InputShapeError):
    """A frame's dtype, type or values cannot be used (non-finite pixels, a float frame in
    [0, 255], a numpy array given to the model). A subclass of InputShapeError: code that
    catches bad frames catches these too."""


class NonFiniteOutputError(FlashDepthError, RuntimeError):
    """The model produced NaN or Inf for a frame (broken weights, or an overflow at low precision).

    ``index`` is the frame's index in its stream; the stream state is kept as it was before it.
    """

    def __init__(self, index: int, where: str = "depth"):
        self.index, self.where = index, where
        super().__init__(f"the model produced non-finite values (NaN/Inf) in its {where} at frame {index} of the "
                         "stream; the stream state was kept as it was before that frame. Check the checkpoint for "
                         "NaN/Inf weights, or use precision='fp32' if a low precision overflowed")


class InferenceModeError(ConfigError):
    """A run's inference ``mode`` cannot take this input, this model or this ``option`` (a windowed
    mode and a live source, a model without a window forward, a reset at shot cuts); ``instead``
    names the mode that can."""

    def __init__(self, mode: str, problem: str, instead: str, option: str | None = None):
        self.mode, self.problem, self.instead, self.option = mode, problem, instead, option
        with_option = f" with {option}=True" if option else ""
        super().__init__(f"mode={mode!r}{with_option} {problem}; use mode={instead!r}")


class InputError(FlashDepthError, ValueError):
    """An input (video, image folder, camera, stream) cannot be opened or decoded."""


class MissingIndexError(InputError):
    """An MP4/MOV file holds media data but no index (moov box): the recording was not finalised.

    ``problem`` says why the frames cannot be rebuilt; it may name the reference as ``{reference}``,
    which :meth:`worded` fills in the caller's terms (``reference=...`` here, a flag on the CLI).
    """

    def __init__(self, name: str, media_bytes: int, problem: str, reference: str | None = None,
                 suggest_reference: bool = True):
        self.name, self.media_bytes, self.problem = name, media_bytes, problem
        self.reference, self.suggest_reference = reference, suggest_reference
        super().__init__(self.worded("reference={!r}"))

    def worded(self, reference_option: str) -> str:
        """The message, naming the reference with ``reference_option`` (a format string of its path)."""
        text = (f"{self.name} has no index (moov box missing): the file was not finalised (recording interrupted?); "
                f"{self.media_bytes / 1e6:.1f} MB of media data are present but "
                + self.problem.format(reference=reference_option.format(self.reference)))
        if self.suggest_reference:
            text += (f"; to recover the frames, pass {reference_option.format('GOOD.mp4')}, a complete recording "
                     "made by the same camera with the same settings")
        return text


class OutputExistsError(FlashDepthError, FileExistsError):
    """Outputs of an earlier run are in the way."""

    def __init__(self, paths: Sequence[str]):
        self.paths = tuple(str(p) for p in paths)
        super().__init__(f"{', '.join(self.paths)} already exist(s); pass overwrite=True to replace them")


class OutputError(FlashDepthError, OSError):
    """An output folder or file cannot be written."""


class MissingDependencyError(FlashDepthError, ImportError):
    """An optional dependency is needed for what was asked."""

    def __init__(self, what: str, package: str, extra: str):
        self.what, self.package, self.extra = what, package, extra
        super().__init__(f"{what} needs {package}: pip install 'flashdepth[{extra}]'")


def require_modules(what: str, needs: Sequence[tuple[str, str, str]]) -> None:
    """Raise :class:`MissingDependencyError` for the first of ``needs`` -- (module, pip package,
    flashdepth extra) -- that is not installed; ``what`` names what needs it. Nothing is imported."""
    import importlib.util

    for module, package, extra in needs:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(what, package, extra)


class ExportError(FlashDepthError, RuntimeError):
    """A model cannot be exported, or an exported graph cannot be used as asked."""


class GraphFileError(ExportError):
    """A file that should hold a graph written by flashdepth does not (``problem`` says how)."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{problem}; write one with flashdepth.export.export_onnx")


class GraphOptionError(ExportError):
    """An option that a graph file fixes by itself (its model, size or runtime) was given a value it
    cannot honour; ``option`` is the parameter's name, ``reason`` says why and what to do."""

    def __init__(self, option: str, value: object, reason: str):
        self.option, self.value, self.reason = option, value, reason
        super().__init__(f"{option}={value!r} {reason}")


class DatasetFormatError(FlashDepthError, ValueError):
    """A sequence or dataset folder does not follow the format, or a source dataset is not in
    its expected layout."""


class PredictionFormatError(DatasetFormatError):
    """Saved predictions of a method (scored by the evaluation) are missing, corrupt, or do not
    match the ground truth's frames and size."""


class ViewerError(FlashDepthError, OSError):
    """A live viewer cannot start (the Rerun viewer does not launch)."""


class ServeAddressError(ViewerError):
    """The live viewer cannot listen on an address (taken, or not this machine's)."""

    def __init__(self, host: str, port: int, reason: str):
        self.host, self.port, self.reason = host, port, reason
        super().__init__(f"cannot serve on {host}:{port}: {reason}; choose another port (port=0 picks a free one) "
                         "or host")


class WorkerStartError(FlashDepthError, RuntimeError):
    """A batch worker could not load its model (so no input of the batch could be processed)."""


class AnchorsError(FlashDepthError, ValueError):
    """A file of metric anchors (sparse depths in metres that align a relative stream) is unreadable
    or breaks its format: a missing column, a pixel outside the image, a depth that is not positive,
    a frame the stream does not have. ``path`` is the file."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"anchors {path}: {problem}")

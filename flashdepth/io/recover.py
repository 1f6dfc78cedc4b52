"""Frames from an MP4/MOV file whose index (moov box) was never written.

A camera writes the media data (the ``mdat`` box) while it records and the index (the ``moov``
box: where each sample starts, its size and time, and the decoder configuration) when it stops.
A recording interrupted by a crash, a pulled card or a flat battery has the media data and no
index, and FFmpeg refuses to open it. The samples are still there, one after the other:

* H.264 and HEVC samples are NAL units, each preceded by its length (AVCC/HVCC framing). Walking
  the lengths and writing a start code before each unit gives the raw (Annex B) stream FFmpeg's
  ``h264``/``hevc`` demuxers read. The decoder configuration (SPS/PPS, and VPS for HEVC) is either
  in the stream itself (in-band) or only in the lost index; in the latter case it is taken from a
  *reference*: a complete recording from the same camera with the same settings.
* MPEG-4 Part 2 samples carry start codes already; the configuration (the VOL header) is put in
  front of the media data.

Other tracks (audio chunks between the video samples) do not parse as plausible NAL units: the
walk skips them by scanning forward for the next position where two units chain. The unit cut by
the end of the file is dropped. Nothing here decodes: :class:`ElementaryStream` is a read-only
file object PyAV demuxes, produced chunk by chunk while it is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

from ..errors import InputError, MissingIndexError
from ..utils import first_line

#: top-level box types that mark a file as ISO BMFF (MP4, MOV, 3GP, ...) when they come first
_LEADING_BOXES = {b"ftyp", b"free", b"skip", b"wide", b"mdat", b"moov", b"pnot", b"uuid", b"styp"}
_START_CODE = b"\x00\x00\x00\x01"
_MAX_UNIT = 1 << 24  # a NAL unit above 16 MB is taken for junk (4K intra frames are a few MB)
_CHUNK = 1 << 20  # bytes read from the file at a time
_PROBE_BYTES = 8 << 20  # how far into the media data in-band parameter sets are looked for


@dataclass(frozen=True)
class Box:
    type: bytes
    offset: int  # first byte of the box header
    header: int  # header size (8, or 16 with a 64-bit size)
    size: Optional[int]  # declared size, header included; None: "to the end of the file"

    def end(self, file_size: int) -> int:
        return file_size if self.size is None else self.offset + self.size


def top_level_boxes(f: BinaryIO, file_size: int) -> list[Box]:
    """The top-level boxes of ``f`` from their headers alone; the last one may run past the end of
    the file. Empty when the file does not start like an ISO BMFF file."""
    boxes: list[Box] = []
    offset = 0
    while offset + 8 <= file_size:
        f.seek(offset)
        head = f.read(16)
        size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if size == 1:  # a 64-bit size follows the type
            if len(head) < 16:
                break
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        if not boxes and kind not in _LEADING_BOXES:
            return []
        if size == 0:  # "to the end of the file": what a recorder writes until it knows the size
            boxes.append(Box(kind, offset, header, None))
            break
        if size < header:
            break  # not a box: stop at what was understood
        boxes.append(Box(kind, offset, header, size))
        offset += size
    return boxes


@dataclass(frozen=True)
class UnindexedMedia:
    """The media data of an ISO BMFF file that has no complete ``moov`` box."""

    path: str
    ranges: tuple[tuple[int, int], ...]  # (start, end) byte ranges of mdat payloads present in the file
    declared: Optional[int]  # bytes of media data the mdat headers declare; None: open-ended (size 0)
    cut: bool = True  # whether the end of the file cuts the last mdat (False: only the index is missing)

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.ranges)


def find_unindexed(path: str | Path) -> Optional[UnindexedMedia]:
    """The media data of ``path`` if it is an MP4/MOV file with an ``mdat`` box but no complete
    ``moov`` box (none, or one cut by the end of the file); None for every other file."""
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        boxes = top_level_boxes(f, file_size)
    if any(b.type == b"moov" and b.end(file_size) <= file_size for b in boxes):
        return None
    mdats = [b for b in boxes if b.type == b"mdat"]
    if not mdats:
        return None
    ranges = tuple((b.offset + b.header, min(b.end(file_size), file_size)) for b in mdats)
    declared = None if any(b.size is None for b in mdats) else sum(b.size - b.header for b in mdats)
    cut = mdats[-1].size is None or mdats[-1].end(file_size) > file_size
    return UnindexedMedia(str(path), tuple(r for r in ranges if r[1] > r[0]), declared, cut)


# ---- the bitstream formats that can be rebuilt, one row each ----

def _h264_header_ok(h: bytes) -> bool:
    forbidden, ref_idc, kind = h[0] >> 7, (h[0] >> 5) & 3, h[0] & 0x1F
    if forbidden:
        return False
    if kind in (1, 5, 7, 8):  # slices, IDR slices, SPS, PPS
        return kind == 1 or ref_idc != 0
    return kind in (6, 9, 10, 11, 12) and ref_idc == 0  # SEI, access unit delimiter, end of seq/stream, filler


def _hevc_header_ok(h: bytes) -> bool:
    forbidden, kind, layer, tid = h[0] >> 7, (h[0] >> 1) & 0x3F, ((h[0] & 1) << 5) | (h[1] >> 3), h[1] & 7
    return not forbidden and layer == 0 and tid != 0 and (kind <= 9 or 16 <= kind <= 21 or 32 <= kind <= 40)


def _avcc_config(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [SPS..., PPS...]) of an avcC record."""
    length_size, units, pos = (extradata[4] & 3) + 1, [], 5
    for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            n = struct.unpack(">H", extradata[pos:pos + 2])[0]
            units.append(extradata[pos + 2:pos + 2 + n])
            pos += 2 + n
    return length_size, units


def _hvcc_config(extradata: bytes) -> tuple[int, list[bytes]]:
    """(NAL length size, [VPS, SPS, PPS, SEI...]) of an hvcC record."""
    length_size, units, pos = (extradata[21] & 3) + 1, [], 23
    for _ in range(extradata[22]):
        count = struct.unpack(">H", extradata[pos + 1:pos + 3])[0]
        pos += 3
        for _ in range(count):
            n = struct.unpack(">H", extradata[pos:pos + 2])[0]
            units.append(extradata[pos + 2:pos + 2 + n])
            pos += 2 + n
    return length_size, units


@dataclass(frozen=True)
class BitstreamFormat:
    """How samples of one codec are rebuilt into a raw stream FFmpeg demuxes."""

    codec: str  # FFmpeg's codec name (what a reference's stream reports)
    label: str
    demuxer: str  # FFmpeg's raw-stream demuxer
    nal_header: int = 0  # bytes of a NAL unit header; 0: the samples carry start codes (copied as they are)
    header_ok: Optional[Callable[[bytes], bool]] = None
    nal_type: Optional[Callable[[bytes], int]] = None
    parameter_sets: tuple[int, ...] = ()  # NAL types a decoder needs before the first picture
    vcl_types: frozenset = frozenset()  # NAL types of coded slices
    config: Optional[Callable[[bytes], tuple[int, list[bytes]]]] = None  # extradata -> (length size, units)
    picture_start: bytes = b""  # start code of a picture, for formats without NAL framing


FORMATS = {f.codec: f for f in (
    BitstreamFormat("h264", "H.264", "h264", 1, _h264_header_ok, lambda h: h[0] & 0x1F, (7, 8),
                    frozenset((1, 5)), _avcc_config),
    BitstreamFormat("hevc", "HEVC", "hevc", 2, _hevc_header_ok, lambda h: (h[0] >> 1) & 0x3F, (32, 33, 34),
                    frozenset(range(32)), _hvcc_config),
    BitstreamFormat("mpeg4", "MPEG-4 Part 2", "m4v", picture_start=b"\x00\x00\x01\xb6"),
)}


@dataclass
class WalkStats:
    units: int = 0
    skipped: int = 0  # bytes of other data (audio, metadata) stepped over
    dropped: int = 0  # bytes of the unit cut by the end of the file
    types: set = field(default_factory=set)


class _Window:
    """Reads ``[pos, pos + n)`` of a file range through a buffer of about ``_CHUNK`` bytes."""

    def __init__(self, f: BinaryIO, end: int):
        self.f, self.end, self.base, self.buf = f, end, 0, b""

    def get(self, pos: int, n: int, peek: bool = False) -> bytes:
        """``peek``: a few bytes read directly when outside the buffer, which is kept (a look far ahead)."""
        n = min(n, self.end - pos)
        if pos < self.base or pos + n > self.base + len(self.buf):
            self.f.seek(pos)
            if peek:
                return self.f.read(n)
            self.buf, self.base = self.f.read(min(max(n, _CHUNK), self.end - pos)), pos
        return self.buf[pos - self.base:pos - self.base + n]

    def find_zero(self, pos: int) -> int:
        """The next position from ``pos`` holding a zero byte (the end if none)."""
        while pos < self.end:
            self.get(pos, 1)
            hit = self.buf.find(b"\x00", pos - self.base)
            if hit >= 0:
                return self.base + hit
            pos = self.base + len(self.buf)
        return self.end


def walk_units(f: BinaryIO, start: int, end: int, fmt: BitstreamFormat, length_size: int,
               stats: WalkStats) -> Iterator[bytes]:
    """The length-prefixed NAL units of ``f[start:end]``, stepping over other data; stops at the
    unit the end cuts (dropped)."""
    ls, hs = length_size, fmt.nal_header
    win = _Window(f, end)

    def length_at(p: int, peek: bool = False) -> Optional[int]:
        head = win.get(p, ls + hs, peek)
        if len(head) < ls + hs:
            return None
        n = int.from_bytes(head[:ls], "big")
        return n if hs <= n < _MAX_UNIT and fmt.header_ok(head[ls:]) else None

    def chains(p: int) -> bool:
        """A unit at ``p`` that ends inside the data and is followed by another unit (or the end)."""
        n = length_at(p)
        if n is None or p + ls + n > end:
            return False
        q = p + ls + n
        return q + ls + hs > end or length_at(q, peek=True) is not None

    def resync(p: int) -> Optional[int]:
        while p + ls + hs <= end:
            if ls == 4:  # lengths below 16 MB start with a zero byte: jump to the next one
                p = win.find_zero(p)
            if chains(p):
                return p
            p += 1
        return None

    def continues_picture(unit: bytes) -> bool:
        """A slice that is not the first of its picture (H.264 first_mb_in_slice != 0, HEVC
        first_slice_segment_in_pic_flag == 0: both the first bit after the header)."""
        return len(unit) > hs and fmt.nal_type(unit) in fmt.vcl_types and not unit[hs] & 0x80

    held: list[bytes] = []  # the units since the last picture start: released when the next picture starts
    pos, cut = start, False
    while pos + ls + hs <= end:
        n = length_at(pos)
        if n is not None and pos + ls + n <= end:
            unit = win.get(pos + ls, n)
            stats.types.add(fmt.nal_type(unit))
            if fmt.nal_type(unit) in fmt.vcl_types and not continues_picture(unit):
                stats.units += len(held)
                yield from held
                held = []
            held.append(unit)
            pos += ls + n
            continue
        found = resync(pos + 1)
        if found is None:
            cut = n is not None  # a plausible unit running past the end, nothing after it: the unit cut
            break
        stats.skipped += found - pos
        pos = found
    # A picture whose remaining slices were cut off would decode with a patched-up lower part: drop it.
    if cut and pos + ls + hs < end and continues_picture(win.get(pos + ls, hs + 1)):
        stats.dropped += sum(len(u) + ls for u in held)
        held = []
    stats.units += len(held)
    yield from held
    stats.dropped += end - pos


def _rfind(f: BinaryIO, code: bytes, start: int, end: int) -> int:
    """The last position of ``code`` in ``f[start:end]`` within ``_MAX_UNIT`` of ``end``; -1 if none."""
    pos = end
    while pos > start and end - pos < _MAX_UNIT:
        lo = max(start, pos - _CHUNK)
        f.seek(lo)
        hit = f.read(min(end, pos + len(code) - 1) - lo).rfind(code)
        if hit >= 0:
            return lo + hit
        pos = lo
    return -1


def _last_picture_start(f: BinaryIO, start: int, end: int, code: bytes, stats: WalkStats) -> int:
    """Where the last picture of ``f[start:end]`` (and the headers just before it) starts: the end
    of the file cuts it, and a cut picture would decode with a patched-up lower part. ``end`` when
    no picture start is found near the end."""
    last = _rfind(f, code, start, end)
    if last < 0:
        return end
    previous = _rfind(f, code, start, last)
    if previous >= 0:  # headers (GOV, VOL, user data) between the two pictures go with the last one
        f.seek(previous + len(code))
        headers = f.read(last - previous - len(code)).find(code[:3])
        if headers >= 0:
            last = previous + len(code) + headers
    stats.dropped += end - last
    return last


@dataclass(frozen=True)
class Recovery:
    """What is needed to rebuild the raw stream of an unindexed file."""

    media: UnindexedMedia
    format: BitstreamFormat
    length_size: int = 4
    prefix: bytes = b""  # decoder configuration sent before the media data (Annex B units or a VOL header)
    fps: Optional[Fraction] = None
    reference: Optional[str] = None
    reference_size: Optional[tuple[int, int]] = None  # (width, height) of the reference

    @property
    def source_of_config(self) -> str:
        return f"the decoder configuration of {self.reference}" if self.reference else "in-band parameter sets"


def _in_band_format(media: UnindexedMedia) -> Optional[BitstreamFormat]:
    """The format whose parameter sets appear in the first ``_PROBE_BYTES`` of the media data."""
    start, end = media.ranges[0]
    end = min(end, start + _PROBE_BYTES)
    with open(media.path, "rb") as f:
        for fmt in FORMATS.values():
            if not fmt.nal_header:
                continue
            stats = WalkStats()
            for _ in walk_units(f, start, end, fmt, 4, stats):
                if stats.types.issuperset(fmt.parameter_sets):
                    return fmt
        f.seek(start)
        head = f.read(min(end - start, 1 << 16))
    if head[:3] == b"\x00\x00\x01" and any(head.find(b"\x00\x00\x01" + bytes([c])) >= 0 for c in range(0x20, 0x30)):
        return FORMATS["mpeg4"]  # starts with start codes and holds a VOL header
    return None


def plan_recovery(media: UnindexedMedia, name: str, reference: Optional[str] = None) -> Recovery:
    """How to rebuild the frames of ``media``: from a reference's decoder configuration when one is
    given, else from parameter sets found in the media data. Raises :class:`MissingIndexError` when
    neither works."""
    if not media.size:
        raise MissingIndexError(name, 0, "the file ends before the first frame", suggest_reference=False)
    if reference is None:
        fmt = _in_band_format(media)
        if fmt is None:
            raise MissingIndexError(name, media.size, "they carry no decoder configuration (no in-band SPS/PPS "
                                    "or VOL header), which was in the lost index")
        return Recovery(media, fmt)
    import av

    try:
        with av.open(str(reference)) as container:
            if not container.streams.video:
                raise MissingIndexError(name, media.size, "{reference} has no video stream",
                                        reference, suggest_reference=False)
            stream = container.streams.video[0]
            codec, extradata = stream.codec_context.name, bytes(stream.codec_context.extradata or b"")
            rate = stream.average_rate or stream.guessed_rate
            size = (stream.codec_context.width, stream.codec_context.height)
    except av.error.FFmpegError as e:
        raise MissingIndexError(name, media.size, f"{{reference}} cannot be opened ({first_line(e)})",
                                reference, suggest_reference=False) from None
    fmt = FORMATS.get(codec)
    if fmt is None:
        supported = ", ".join(f.label for f in FORMATS.values())
        raise MissingIndexError(name, media.size, f"{{reference}} holds {codec}, and only {supported} "
                                "can be rebuilt without an index", reference, suggest_reference=False)
    if not extradata:
        raise MissingIndexError(name, media.size, "{reference} has no decoder configuration "
                                "either (give an MP4/MOV recording)", reference, suggest_reference=False)
    length_size, prefix = 4, extradata
    if fmt.config is not None and not extradata.startswith((b"\x00\x00\x01", _START_CODE)):
        try:
            length_size, units = fmt.config(extradata)
        except (IndexError, struct.error):
            raise MissingIndexError(name, media.size, f"the {fmt.label} decoder configuration of "
                                    "{reference} cannot be read", reference, suggest_reference=False) from None
        prefix = b"".join(_START_CODE + u for u in units)
    return Recovery(media, fmt, length_size, prefix, Fraction(rate) if rate else None, str(reference), size)


class ElementaryStream:
    """The raw stream of an unindexed file as a read-only, forward-only file object (what PyAV's
    ``av.open(stream, format=...)`` reads). Made while it is read: memory stays at a chunk."""

    def __init__(self, recovery: Recovery):
        self.recovery, self.stats = recovery, WalkStats()
        self._file = open(recovery.media.path, "rb")
        self._parts = self._generate()
        self._pending, self._offset = b"", 0

    def _generate(self) -> Iterator[bytes]:
        r = self.recovery
        if r.prefix:
            yield r.prefix
        for start, end in r.media.ranges:
            if r.format.nal_header:
                for unit in walk_units(self._file, start, end, r.format, r.length_size, self.stats):
                    yield _START_CODE
                    yield unit
            else:
                if r.media.cut and (start, end) == r.media.ranges[-1]:
                    end = _last_picture_start(self._file, start, end, r.format.picture_start, self.stats)
                for pos in range(start, end, _CHUNK):
                    self._file.seek(pos)
                    yield self._file.read(min(_CHUNK, end - pos))

    def read(self, n: int = -1) -> bytes:
        out, have = [], 0
        while n < 0 or have < n:
            if self._offset >= len(self._pending):
                part = next(self._parts, None)
                if part is None:
                    break
                self._pending, self._offset = part, 0
            left = len(self._pending) - self._offset
            take = left if n < 0 else min(n - have, left)
            out.append(self._pending[self._offset:self._offset + take])
            self._offset += take
            have += take
        return b"".join(out)

    def close(self) -> None:
        self._parts.close()
        self._file.close()


def check_reference(reference: str) -> str:
    """``reference`` as a path that exists, or an :class:`InputError`."""
    if not Path(reference).is_file():
        raise InputError(f"reference {reference} does not exist; give a complete recording from the same camera")
    return str(reference)

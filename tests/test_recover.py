"""MP4 files whose index (moov box) was never written: detection, the precise error, and the frames
rebuilt from in-band parameter sets or from a reference recording's decoder configuration."""

import io
import struct

import numpy as np
import pytest

from flashdepth import FlashDepth
from flashdepth.errors import InputError, MissingIndexError
from flashdepth.io import recover
from flashdepth.io.sources import AVSource, RecoveredSource, open_source
from flashdepth.inference.weights import save_checkpoint
from flashdepth_cli.common import cli_message
from flashdepth_cli.main import main

from conftest import TINY, randomize
from media import decode_video, make_frames, write_video

av = pytest.importorskip("av")


def boxes(path):
    with open(path, "rb") as f:
        return [(b.type.decode(), b.offset, b.size) for b in recover.top_level_boxes(f, path.stat().st_size)]


def cut(path, fraction, name="cut.mp4"):
    """The first ``fraction`` of ``path``; ``"index"``: all but its last 100 bytes (inside the moov)."""
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[: len(data) - 100 if fraction == "index" else int(len(data) * fraction)])
    return out


def complete_frames(path, length):
    """The original frames whose video sample lies wholly in the first ``length`` bytes, in display order."""
    frames, pts, _ = decode_video(path)
    with av.open(str(path)) as container:
        kept = {p.pts for p in container.demux(video=0) if p.size and p.pos + p.size <= length}
    return [frame for frame, t in zip(frames, pts) if t in kept]


def read_all(source):
    try:
        return list(source)
    finally:
        source.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One recording to break and another one "from the same camera" (same settings, other content)."""
    root = tmp_path_factory.mktemp("recover")
    made = {}
    for name, codec, options, audio in (("h264", "libx264", None, False),
                                        ("inband", "libx264", {"x264-params": "repeat-headers=1"}, False),
                                        ("audio", "libx264", None, True),
                                        ("mpeg4", "mpeg4", None, False),
                                        ("hevc", "libx265", None, False)):
        made[name] = write_video(root / f"{name}.mp4", make_frames(24), codec=codec, options=options, audio=audio)
        made[name + "-ref"] = write_video(root / f"{name}-ref.mp4", make_frames(6, seed=5), codec=codec,
                                          options=options, audio=audio)
    return made


def test_pyav_writes_the_index_last_and_keeps_h264_parameter_sets_out_of_band(clips):
    assert [b[0] for b in boxes(clips["h264"])] == ["ftyp", "free", "mdat", "moov"]
    media = recover.find_unindexed(cut(clips["h264"], 0.6))
    stats = recover.WalkStats()
    with open(media.path, "rb") as f:
        list(recover.walk_units(f, *media.ranges[0], recover.FORMATS["h264"], 4, stats))
    assert stats.types == {1, 5, 6}  # slices and SEI, no SPS (7) / PPS (8): those are in the moov's avcC
    stats = recover.WalkStats()
    with open(clips["inband"], "rb") as f:
        start, end = recover.find_unindexed(cut(clips["inband"], 0.6)).ranges[0]
        list(recover.walk_units(f, start, end, recover.FORMATS["h264"], 4, stats))
    assert {7, 8} <= stats.types


def test_detection(clips, tmp_path):
    good = clips["h264"]
    assert recover.find_unindexed(good) is None
    mdat = next(b for b in boxes(good) if b[0] == "mdat")
    media = recover.find_unindexed(cut(good, 0.6))
    size = int(good.stat().st_size * 0.6)
    assert media.ranges == ((mdat[1] + 8, size),) and media.declared == mdat[2] - 8 and media.size == size - mdat[1] - 8
    assert media.cut
    # a camera still recording writes size 0 ("to the end of the file")
    data = bytearray(good.read_bytes()[:size])
    data[mdat[1]:mdat[1] + 4] = struct.pack(">I", 0)
    (tmp_path / "open.mp4").write_bytes(data)
    assert recover.find_unindexed(tmp_path / "open.mp4").declared is None
    recovered = read_all(open_source(tmp_path / "open.mp4", reference=clips["h264-ref"]))
    assert len(recovered) == len(complete_frames(good, size)) > 0
    # cut inside the index: all the media data is there, the index is not
    media = recover.find_unindexed(cut(good, "index", "inmoov.mp4"))
    assert media.size == mdat[2] - 8 and not media.cut
    mkv = write_video(tmp_path / "v.mkv", make_frames(4), codec="mpeg4")
    assert recover.find_unindexed(cut(mkv, 0.5, "cut.mkv")) is None
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 10)
    assert recover.find_unindexed(tmp_path / "notes.mp4") is None


def test_complete_mp4_opens_as_before(clips):
    for reference in (None, clips["h264-ref"]):  # a reference is not used for a file that has its index
        source = open_source(clips["h264"], reference=reference)
        assert type(source) is AVSource and source.frame_count == 24
        frames = read_all(source)
        assert len(frames) == 24 and source.recovery_note() is None


def test_no_decoder_configuration_is_a_precise_error(clips):
    broken = cut(clips["h264"], 0.6)
    with pytest.raises(MissingIndexError) as caught:
        open_source(broken)
    message = str(caught.value)
    mb = recover.find_unindexed(broken).size / 1e6
    assert "has no index (moov box missing)" in message and "not finalised" in message
    assert f"{mb:.1f} MB of media data are present" in message and "no in-band SPS/PPS" in message
    assert "reference='GOOD.mp4'" in message and "\n" not in message
    cli = cli_message(caught.value)
    assert "--recover-with GOOD.mp4" in cli and "reference=" not in cli
    assert isinstance(caught.value, InputError)


@pytest.mark.parametrize("name,fraction,reference", [
    ("inband", 0.6, False),  # SPS/PPS in the stream: no reference needed
    ("h264", 0.6, True),
    ("audio", 0.55, True),  # AAC chunks between the video samples
    ("mpeg4", 0.6, True),  # VOL header from the reference's esds
    ("mpeg4", "index", True),  # only the index is cut: every frame is there, the last one included
    ("hevc", 0.6, True),  # VPS/SPS/PPS from the reference's hvcC; x265 uses B-frames
])
def test_recovered_frames_equal_the_original_decode(clips, name, fraction, reference):
    broken = cut(clips[name], fraction)
    source = open_source(broken, fps=7, reference=clips[name + "-ref"] if reference else None)
    assert isinstance(source, RecoveredSource)
    frames = read_all(source)
    expected = complete_frames(clips[name], broken.stat().st_size)
    assert 3 <= len(expected) < 24 or (fraction == "index" and len(expected) == 24)
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected):
        assert np.array_equal(got.image, want)
    assert [f.pts for f in frames] == list(range(len(frames))) and [f.index for f in frames] == [f.pts for f in frames]
    assert source.fps == 10 and source.time_base == 1 / source.fps  # the reference's, or the stream's (not fps=7)
    assert f"recovered {len(frames)} frames" in source.recovery_note()
    if name == "audio":
        assert source.elementary.stats.skipped > 0 and "other data (audio?) skipped" in source.recovery_note()


def avcc(*units):
    return b"".join(struct.pack(">I", len(u)) + u for u in units)


def test_walk_skips_other_data_and_drops_the_cut_picture():
    sps, pps, sei = b"\x67\x64\x00\x1f", b"\x68\xee\x3c\x80", b"\x06\x05\x10" + b"\x00" * 16
    idr = [b"\x65\x88" + bytes([i]) * 40 for i in range(2)]  # a picture of two slices
    first = [b"\x41\x9a" + bytes([i]) * 30 for i in range(2)]  # first slices of the next pictures (first bit 1)
    rest = [b"\x41\x1a" + bytes([i]) * 30 for i in range(2)]  # their second slices (first bit 0)
    junk = bytes(range(200, 256)) * 3  # not a plausible length + NAL header anywhere (an audio chunk)
    data = avcc(sps, pps, sei, *idr) + junk + avcc(first[0], rest[0], first[1], rest[1])
    fmt = recover.FORMATS["h264"]

    def walk(end):
        stats = recover.WalkStats()
        return list(recover.walk_units(io.BytesIO(data), 0, end, fmt, 4, stats)), stats

    units, stats = walk(len(data))
    assert units == [sps, pps, sei, *idr, first[0], rest[0], first[1], rest[1]]
    assert stats.skipped == len(junk) and stats.dropped == 0
    units, stats = walk(len(data) - 10)  # cuts the second slice of the last picture: the picture goes
    assert units == [sps, pps, sei, *idr, first[0], rest[0]]
    assert stats.dropped == len(avcc(first[1])) + len(rest[1]) + 4 - 10
    units, _ = walk(len(data) - len(avcc(rest[1])) - 3)  # cuts a first slice: the picture before it is
    assert units == [sps, pps, sei, *idr, first[0], rest[0]]  # whole and stays
    units, _ = walk(len(data) - len(avcc(first[1], rest[1])) - 3)  # cuts the second slice of first[0]
    assert units == [sps, pps, sei, *idr]


def test_wrong_reference_is_a_precise_error(clips, tmp_path):
    from PIL import Image

    broken = cut(clips["h264"], 0.6)
    Image.fromarray(make_frames(1)[0]).save(tmp_path / "still.png")
    with pytest.raises(MissingIndexError, match="holds png, and only H.264, HEVC, MPEG-4 Part 2 can be rebuilt"):
        open_source(broken, reference=tmp_path / "still.png")
    source = open_source(broken, reference=clips["mpeg4-ref"])
    with pytest.raises(MissingIndexError, match="no frame decodes with the decoder configuration of .*same camera"):
        read_all(source)
    with pytest.raises(InputError, match="reference .* does not exist"):
        open_source(broken, reference=broken.with_name("missing.mp4"))


def test_cli_run_recovers_with_a_reference(clips, tmp_path, capsys):
    ckpt = save_checkpoint(randomize(FlashDepth(TINY["s"]), seed=3), tmp_path / "tiny.pth")
    good = write_video(tmp_path / "good.mp4", make_frames(12), audio=True)
    other = write_video(tmp_path / "other.mp4", make_frames(3, seed=4), audio=True)
    broken = cut(good, 0.6)
    expected = len(complete_frames(good, broken.stat().st_size))
    out = tmp_path / "out"
    args = ["run", str(broken), "-o", str(out), "--checkpoint", str(ckpt), "--save", "raw,vis", "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "--recover-with GOOD.mp4" in error and not out.exists()
    assert main(args + ["--recover-with", str(other)]) == 0
    captured = capsys.readouterr()
    assert f"frames {expected}" in captured.out
    warning = [line for line in captured.err.splitlines() if line.startswith("flashdepth: warning: recovered")]
    assert len(warning) == 1 and f"recovered {expected} frames from {broken}" in warning[0]
    assert np.load(out / "depth.npy").shape == (expected, 140, 196)
    frames, pts, fps = decode_video(out / "depth.mp4")
    assert len(frames) == expected and fps == 10 and pts == [i * pts[1] for i in range(expected)]  # one per 1/10 s
    assert main(args[:3] + [str(tmp_path / "o2")] + args[4:] + ["--recover-with", str(tmp_path / "nope.mp4")]) == 2
    assert "--recover-with" in capsys.readouterr().err

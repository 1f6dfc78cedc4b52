"""Small test inputs made on the fly: videos written with PyAV, image folders with Pillow."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def make_frames(n: int, height: int = 140, width: int = 196, seed: int = 0) -> list[np.ndarray]:
    """Smoothly moving colour patterns (compress well, decode deterministically)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 14 + 2, width // 14 + 2, 3)).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    out = []
    for t in range(n):
        iy = ((ys + 3 * t) // 14) % base.shape[0]
        ix = ((xs + 2 * t) // 14) % base.shape[1]
        out.append(base[iy, ix].astype(np.uint8))
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "libx264",
                options: dict | None = None, audio: bool = False) -> Path:
    """``options`` are added to the encoder's; ``audio`` muxes an AAC tone beside the video (its
    chunks land between the video samples, as a camera writes them)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        defaults = {"libx264": {"crf": "0", "preset": "ultrafast", "bf": "0"},
                    "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"}}
        stream.options = {**defaults.get(codec, {}), **(options or {})}
        sound, rate, done = None, 48000, 0
        if audio:
            sound = container.add_stream("aac", rate=rate)
            sound.layout = "mono"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            if sound is not None:
                n = rate // fps
                tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(done, done + n) / rate)
                chunk = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, done
                done += n
                for packet in sound.encode(chunk):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        for packet in sound.encode() if sound is not None else ():
            container.mux(packet)
    return path


def decode_video(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        return frames, pts, Fraction(stream.average_rate)


def write_images(folder: Path, frames: list[np.ndarray], names=None) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames):
        name = names[i] if names else f"{i}.png"
        Image.fromarray(image).save(folder / name)
    return folder

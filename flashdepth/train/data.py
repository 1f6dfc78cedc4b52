"""Training clips from sequence folders.

One item = T frames of one sequence at a fixed stride around an anchor frame, as the published
loaders sample them, with these documented differences (each explained at its anchor in
``docs/datasets.md``):

* every frame of every sequence is an anchor; the window lies after or before the anchor (a coin
  flip when both fit); windows always lie fully inside the sequence (a sequence too short for
  the stride uses the largest stride that fits; sequences shorter than T are skipped):
  docs/datasets.md#official-b6;
* ``random_stride`` (off by default, as in the published code) draws each clip's stride from
  1..stride: docs/datasets.md#official-a1;
* one crop per clip, not per frame (docs/datasets.md#official-b7); the useless pre-scale is
  dropped (docs/datasets.md#official-b9);
* ground truth is resampled with validity-aware area averaging: invalid and sky codes never leak
  into valid values, and a pixel stays valid only if its whole footprint was valid
  (docs/datasets.md#official-b8).

Randomness comes from a generator seeded by (seed, epoch, index), so a resumed run sees exactly
the clips it would have seen, and no process reseeds another's (docs/datasets.md#official-b12).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import InputConfig
from ..errors import ConfigError
from .choices import CROPS, choose
from ..data.sequence import DatasetFolder, SequenceFolder
from ..inference.preprocess import normalise, to_float_rgb


@dataclass(frozen=True)
class Anchor:
    sequence: int
    frame: int


class ClipDataset(Dataset):
    def __init__(self, sequences: Sequence[SequenceFolder], stride: int, clip_length: int = 5,
                 crop: str = "center", crop_size: tuple[int, int] = (518, 518), random_stride: bool = False,
                 seed: int = 0, name: str = "", input_config: InputConfig = InputConfig()):
        """``input_config``: the trained model's normalisation (frames are fed exactly as
        streaming and evaluation feed them)."""
        self.sequences = [s for s in sequences if len(s) >= clip_length and s.has_depth]
        self.anchors = [Anchor(i, f) for i, s in enumerate(self.sequences) for f in range(len(s))]
        if not self.anchors:
            raise ConfigError(f"{name or 'dataset'}: no sequence with ground truth and at least "
                              f"clip_length={clip_length} frames; lower clip_length or add data")
        self.stride, self.clip_length = stride, clip_length
        self.crop, self.crop_size, self.random_stride = crop, tuple(crop_size), random_stride
        self.place = choose(CROPS, crop, "crop").place
        self.seed, self.epoch, self.name = seed, 0, name
        self.input_config = input_config

    @classmethod
    def from_folder(cls, path: str | Path, split: str, **kwargs) -> "ClipDataset":
        folder = DatasetFolder(path)
        return cls(folder.sequences(split), name=folder.name, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.anchors)

    def window(self, length: int, anchor: int, stride: int, rng: np.random.Generator) -> list[int]:
        t = self.clip_length
        stride = max(1, min(stride, (length - 1) // (t - 1)))  # the largest stride that fits
        span = (t - 1) * stride
        forward, backward = anchor + span <= length - 1, anchor >= span
        if forward and backward:
            forward = rng.random() < 0.5
        if forward:
            return [anchor + k * stride for k in range(t)]
        if backward:
            return [anchor - span + k * stride for k in range(t)]
        start = min(max(0, anchor - span // 2), length - 1 - span)  # the window nearest the anchor
        return [start + k * stride for k in range(t)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        anchor = self.anchors[index]
        seq = self.sequences[anchor.sequence]
        stride = int(rng.integers(1, self.stride + 1)) if self.random_stride else self.stride
        frames = self.window(len(seq), anchor.frame, stride, rng)
        th, tw = self.crop_size
        size, (y0, x0) = self.place(seq.height, seq.width, th, tw, rng)  # one resize and crop for the clip
        video, target = [], []
        for i in frames:
            rgb = to_float_rgb(torch.from_numpy(np.array(seq.rgb(i))))  # (3, h, w) in [0, 1]
            video.append(normalise(rgb, size, self.input_config)[0, :, y0:y0 + th, x0:x0 + tw])
            target.append(resample_target(torch.from_numpy(seq.target(i)), size)[y0:y0 + th, x0:x0 + tw])
        return torch.stack(video), torch.stack(target)  # (T, 3, th, tw), (T, th, tw)


def resample_target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Validity-aware area resampling of inverse depth (-1 invalid, 0 sky) to ``size``.

    Values are averaged over valid pixels only; a pixel is valid when its whole footprint was
    valid, sky when it was all sky, and invalid otherwise.
    """
    if tuple(target.shape) == tuple(size):
        return target
    t = target[None, None].double()
    valid = (t > 0).double()
    sky = (t == 0).double()
    area = lambda x: F.interpolate(x, size=size, mode="area")
    v_frac, s_frac = area(valid), area(sky)
    values = area(t * valid) / v_frac.clamp_min(1e-12)
    out = torch.full_like(values, -1.0)
    out = torch.where(v_frac > 1 - 1e-9, values, out)
    out = torch.where(s_frac > 1 - 1e-9, torch.zeros_like(out), out)
    return out[0, 0].float()


def make_train_datasets(config, seed: int, input_config: InputConfig = InputConfig()) -> list[ClipDataset]:
    """One ClipDataset per configured dataset, in config order, normalised for ``input_config``."""
    root = Path(config.data.root)
    out = []
    for i, name in enumerate(config.data.datasets):
        out.append(ClipDataset.from_folder(root / name, config.data.split, stride=config.data.stride_of(i),
                                           clip_length=config.data.clip_length, crop=config.data.crop,
                                           crop_size=config.data.crop_size, random_stride=config.data.random_stride,
                                           seed=seed, input_config=input_config))
    return out

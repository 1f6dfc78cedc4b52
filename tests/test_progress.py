"""The progress line measures the rate after the first frame (which carries one-off work)."""

import re

from flashdepth_cli import common


def test_rate_and_eta_exclude_the_first_frames_one_off_work(monkeypatch, capsys):
    clock = iter([0.0,  # construction
                  30.0,  # frame 1 ends after a 30 s export
                  31.0, 32.0, 33.0])  # then one frame per second
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    progress = common.Progress(total=100, every=0.0)
    for _ in range(4):
        progress.update()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    rate = float(re.search(r"([\d.]+)frame/s", line).group(1))
    assert 0.9 <= rate <= 1.1, line  # 3 frames in 3 s, not 4 in 33 s
    assert "4/100" in line

"""``plot``: a picture of an example cue with the expected size, and not blank."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from kmidi_ingest.plot import PlotError, figure_size_px, load_cue_plot, render
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('plot')}/db.sqlite"
    assert ingest(EXAMPLES, 16000, database_url=url).ok
    return url


def test_plot_of_an_example_cue(url, tmp_path, capsys):
    out = tmp_path / "1M01.png"
    assert main(["plot", "1M01 Opening", "--out", str(out), "--database-url", url]) == 0
    assert "3 tracks: Strings Hi, Brass Ens, Low Perc (Taiko)" in capsys.readouterr().out
    pixels = imread(out)
    width, height = figure_size_px(3)
    assert pixels.shape[:2] == (height, width) == (1130, 1600)
    rgb = pixels[..., :3]
    not_white = (rgb < 0.95).any(axis=2)
    assert not_white.mean() > 0.4  # piano rolls and spectrograms fill most of the picture
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200


def test_plot_data_lines_up_with_the_database(url):
    data = load_cue_plot(make_engine(url), "Reel 2/2M03 Chase")
    chase = [t for t in data.tracks if t.midi_file_name == "2M03 Chase.mid"]
    assert [t.track_name for t in chase] == ["Hns a4", "Low Perc (Taiko)", "Synth Bass"]
    # 2M03 Chase: 4/4 at 120 BPM then 7/8 from tick 1920 (1.5 s): bars at 0, 1.5 and later.
    assert chase[0].bar_s[:2].tolist() == [0.0, 1.5]
    assert all(t.log_mel.ndim == 2 and t.log_mel.shape[0] == 128 for t in data.tracks)


def test_plot_errors(url, tmp_path, capsys, monkeypatch):
    assert (
        main(["plot", "9M99 Nothing", "--out", str(tmp_path / "x.png"), "--database-url", url]) == 1
    )
    assert "no cue named '9M99 Nothing'" in capsys.readouterr().err
    assert main(["plot", "1M01 Opening", "--database-url", url]) == 2  # --out is required

    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    data = load_cue_plot(make_engine(url), "1M01 Opening")
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(PlotError, match=r"pip install 'kmidi-ingest\[plot\]'"):
        render(data, tmp_path / "y.png")

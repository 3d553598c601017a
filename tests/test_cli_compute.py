"""`preimage compute`: a target from the command line, the result printed, saved and drawn."""

import numpy as np
import pytest
import torch
from torch import nn

from preimage.cli import main
from preimage.preimages import PreimageSet


@pytest.fixture
def tiny_onnx(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(model, torch.zeros(1, 2), str(path), dynamo=False)
    return path


def test_argmax_in_a_box_prints_saves_and_plots(tiny_onnx, tmp_path, capsys):
    out, plot = tmp_path / "set.npz", tmp_path / "set.png"
    code = main(["compute", str(tiny_onnx), "--box=-2,2,-2,2", "--argmax", "1", "--out", str(out),
                 "--plot", str(plot), "-q"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "complete" in printed and "volume fraction" in printed and "time:" in printed
    loaded = PreimageSet.load(out)
    assert loaded.complete and plot.stat().st_size > 0
    fraction = float(printed.split("volume fraction: ")[1].split()[0])
    assert fraction == pytest.approx(loaded.volume().value / 16.0, rel=1e-6)


def test_activity_of_an_input(tiny_onnx, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.array([0.3, -0.4]))
    assert main(["compute", str(tiny_onnx), "--activity-of", str(x), "--layer", "0", "-q"]) == 0
    assert "PreimageSet" in capsys.readouterr().out


def test_missing_target_and_bad_box_are_clear_errors(tiny_onnx, capsys):
    assert main(["compute", str(tiny_onnx), "--box=-1,1,-1,1"]) == 2
    assert "give a target" in capsys.readouterr().err
    assert main(["compute", str(tiny_onnx), "--box=-1,1", "--argmax", "0"]) == 2
    assert "--box needs 4 numbers" in capsys.readouterr().err


def test_vnnlib_property_on_acas_xu(benchmarks_dir, capsys):
    folder = benchmarks_dir / "acasxu"
    code = main(["compute", str(folder / "ACASXU_run2a_1_1_batch_2000.onnx"), "--vnnlib",
                 str(folder / "prop_1.vnnlib"), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "0 pieces, kind empty" in printed and "complete" in printed

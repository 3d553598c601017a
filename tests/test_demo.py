"""The main job and the command line, end to end (reduced sizes)."""

import csv

import pytest

from preimage import cli
from preimage.demo import run_demo


def test_demo_end_to_end(tmp_path):
    lines = []
    result = run_demo(tmp_path, epochs=60, n_test=40, echo=lines.append)
    text = "\n".join(lines)
    assert "activation probabilities" in text and "single point" in text
    assert result.checked == 40 * len(result.network.hidden)
    assert result.agreement == result.checked
    assert [len(p) for p in result.activation_probabilities] == [96, 48]
    for path in result.figures:
        assert path.stat().st_size > 10_000 and path.read_bytes()[:4] == b"\x89PNG"
    with open(tmp_path / "layer_preimages.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result.checked
    for row in rows:
        assert row["kind"] == row["lp_kind"] and row["dim"] == row["lp_dim"]
        assert (row["kind"] == "point") == (row["singleton_test"] == "True")
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_demo_and_info(tmp_path, capsys, benchmarks_dir):
    assert cli.main(["demo", "--out", str(tmp_path), "--epochs", "20", "--n-test", "5"]) == 0
    assert "single point" in capsys.readouterr().out
    assert cli.main(["info", str(benchmarks_dir / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input 1x1x5" in out and "7 layers" in out
    assert cli.main(["info", str(benchmarks_dir / "vcas" / "VertCAS_pra01_v4_45HU_200.nnet")]) == 0
    assert "input box" in capsys.readouterr().out


def test_cli_reports_errors_clearly(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    bad = tmp_path / "model.h5"
    bad.write_text("x")
    assert cli.main(["info", str(bad)]) == 2
    assert ".onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["nonsense"])

"""The main job and the command line, end to end (reduced sizes)."""

import csv

import numpy as np
import pytest

import preimage as pim
from preimage import cli
from preimage.demo import run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    result = run_demo(out, epochs=60, n_test=40, echo=lines.append)
    return out, lines, result


def test_demo_end_to_end(demo_run):
    tmp_path, lines, result = demo_run
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
    names = [path.name for path in result.figures]
    assert "network_preimages_2d.png" in names and "plane_argmax_regions.png" in names
    assert "Fig. 1 right" in text and "exact ArgMax regions on the plane" in text
    assert all(str(path) in text for path in result.figures)


def _activity_tol(y):
    return 1e4 * pim.current().feasibility_tol * (1.0 + np.abs(y).max())


def test_level_preimages_map_to_their_activities(demo_run):
    """Carlsson et al.'s Fig. 1 (right): sampled preimage points reach the activity; each point is in its own."""
    from preimage.demo import _CARLSSON_POINTS, _CARLSSON_VIEW, carlsson_network

    _, _, result = demo_run
    net = carlsson_network()
    points = np.array(_CARLSSON_POINTS)
    assert len(result.levels) == 3 and all(len(entries) == len(points) + 1 for entries in result.levels)
    kinds = set()
    rng = np.random.default_rng(7)
    for entries in result.levels:
        for entry in entries:
            assert entry.whole.complete and entry.shown.complete
            kinds.add(entry.whole.kind)
            X = entry.shown.sample(200, rng=rng)
            assert _CARLSSON_VIEW.contains(X).all()
            assert np.abs(net.activations(X)[entry.level] - entry.y).max() <= _activity_tol(entry.y)
            assert entry.whole.contains(X).all()
            if entry.zero:
                assert np.all(entry.y == 0) and entry.shown.volume().value > 0
                # the zero set against the forward pass on the window: disagreements only on the boundary
                assert entry.shown.verify(3000, rng=rng).ok
            else:
                np.testing.assert_allclose(entry.y, net.activations(points)[entry.level][entry.point])
                assert entry.whole.contains(points[entry.point]) and entry.shown.contains(points[entry.point])
    assert {"point", "unbounded"} <= kinds
    # with b <= 0 after the first level, the set mapped to (0, 0) can only grow: irreversibly lost
    zeros = [entries[-1].shown for entries in result.levels]
    areas = [z.volume().value for z in zeros]
    assert areas[0] < areas[1] < areas[2] < _CARLSSON_VIEW.volume()
    for inner, outer in zip(zeros[:-1], zeros[1:]):
        assert outer.contains(inner.sample(300, rng=rng)).all()


def test_plane_argmax_regions(demo_run):
    """ArgMax pieces on the plane: witnesses classify as their class under the 64-D net; areas tile the box."""
    _, _, result = demo_run
    plane, net = result.plane, result.network
    box = plane.box
    rng = np.random.default_rng(3)
    st = box.sample(500, rng=rng)
    np.testing.assert_allclose(plane.planar.forward(st), net.forward(plane.to_input(st)), rtol=0, atol=1e-10)
    total = 0.0
    for c, pieces in enumerate(plane.sets):
        assert pieces.complete
        for piece in pieces:
            assert box.contains(piece.witness)
            scores = net.forward(plane.to_input(piece.witness))[0]
            assert scores[c] >= scores.max() - 1e3 * pim.current().feasibility_tol * (1.0 + np.abs(scores).max())
        found = pieces.volume()
        assert found.exact
        total += found.value
    np.testing.assert_allclose(total, box.volume(), rtol=1e-9)
    predicted = net.forward(plane.images).argmax(axis=1)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    for corner, c in zip(corners, predicted):
        assert plane.sets[c].contains(corner)
    # the exact 2-D partition of the same plane (an independent computation): each face's centre lies in the
    # set of the face's class, and a face whose vertices all have class c lies inside that class's set
    partition = pim.slice2d(net, plane.origin, plane.u, plane.v, ((box.lo[0], box.hi[0]), (box.lo[1], box.hi[1])))
    centres, classes, areas = partition.centres(), partition.classes(), partition.areas()
    per_vertex = partition.outputs.argmax(axis=1)[partition.face_vtx]
    uniform = np.minimum.reduceat(per_vertex, partition.face_ptr[:-1]) == \
        np.maximum.reduceat(per_vertex, partition.face_ptr[:-1])
    face_class = per_vertex[partition.face_ptr[:-1]]
    for c, pieces in enumerate(plane.sets):
        if np.any(classes == c):
            assert pieces.contains(centres[classes == c]).all()
        inside = uniform & (face_class == c)
        assert pieces.volume().value >= areas[inside].sum() * (1 - 1e-9)
        if inside.any():
            assert pieces.contains(centres[inside]).all()


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

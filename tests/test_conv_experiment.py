"""The conv experiment's data and command line: CIFAR-10 read from local files in both formats (tiny
synthetic batches written here), the nesting of an imported Network against the torch model's, and
``preimage conv``."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

import preimage as pim
from preimage.cli import main
from preimage.conv import ConvLayer, network_nesting
from preimage.conv.experiment import cifar10_images, run_experiment
from preimage.errors import ConeError, DataError

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
PER_BATCH = 4


def _synthetic_cifar(seed=0):
    """name -> (pixels (n, 3072) uint8, labels (n,)): PER_BATCH records per batch."""
    rng = np.random.default_rng(seed)
    return {name: (rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8),
                   rng.integers(0, 10, size=PER_BATCH)) for name in BATCHES}


def _write_binary(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (pixels, labels) in batches.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def _write_python(folder, batches, old_numpy_names=False):
    """Pickles as the python version holds them: protocol 2, bytes keys, labels a list."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (pixels, labels) in batches.items():
        raw = pickle.dumps({b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": pixels},
                           protocol=2)
        if old_numpy_names:  # as NumPy 1 (and the files as distributed) name the array reconstructor
            raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def cifar_root(tmp_path):
    batches = _synthetic_cifar()
    _write_binary(tmp_path / "cifar-10-batches-bin", batches)
    return tmp_path, batches


def test_binary_batches_are_read_record_by_record(cifar_root):
    root, batches = cifar_root
    X_train, y_train, X_test, y_test = cifar10_images(root)
    assert X_train.shape == (5 * PER_BATCH, 3, 32, 32) and X_test.shape == (PER_BATCH, 3, 32, 32)
    assert X_train.dtype == torch.float32 and y_train.dtype == torch.int64
    pixels, labels = batches["data_batch_2"]
    # record 1 of batch 2: red plane, then green, then blue, each 32 x 32 row by row
    image = X_train[PER_BATCH + 1].numpy()
    assert np.allclose(image[0, 0, :5], pixels[1, :5] / 255.0)
    assert np.allclose(image[2].ravel(), pixels[1, 2048:] / 255.0)
    assert y_train[PER_BATCH:2 * PER_BATCH].tolist() == labels.tolist()
    assert y_test.tolist() == batches["test_batch"][1].tolist()
    # the batches folder itself, a limit on each split, and resizing
    X, y, Xt, yt = cifar10_images(root / "cifar-10-batches-bin", size=8, n_train=6, n_test=3)
    assert X.shape == (6, 3, 8, 8) and Xt.shape == (3, 3, 8, 8) and len(y) == 6 and len(yt) == 3
    resized = torch.nn.functional.interpolate(X_train[:6], size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.equal(X, resized)


def test_only_the_batches_needed_are_read(cifar_root):
    root, _ = cifar_root
    (root / "cifar-10-batches-bin" / "data_batch_3.bin").unlink()
    assert len(cifar10_images(root, n_train=2 * PER_BATCH)[1]) == 2 * PER_BATCH
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        cifar10_images(root)


@pytest.mark.parametrize("old_numpy_names", [False, True])
def test_python_batches_give_the_same_images(tmp_path, cifar_root, old_numpy_names):
    root, batches = cifar_root
    python_root = tmp_path / "py"
    _write_python(python_root / "cifar-10-batches-py", batches, old_numpy_names)
    for expected, got in zip(cifar10_images(root), cifar10_images(python_root)):
        assert torch.equal(expected, got)


class _Trap:
    """Pickles as a call of os.remove on a file: loading it with plain pickle would delete the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.remove, (self.path,)


@pytest.mark.parametrize("kind", ["truncated binary", "truncated pickle", "code in a pickle", "eval in a pickle",
                                  "label out of range", "not a batch"])
def test_damaged_or_foreign_files_are_refused(tmp_path, kind):
    batches = _synthetic_cifar(1)
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    if kind in ("truncated binary", "label out of range"):
        folder = _write_binary(tmp_path / "cifar-10-batches-bin", batches)
        target = folder / "test_batch.bin"
        raw = bytearray(target.read_bytes())
        if kind == "truncated binary":
            raw = raw[:-1]
        else:
            raw[3073] = 10
        target.write_bytes(bytes(raw))
    else:
        folder = _write_python(tmp_path / "cifar-10-batches-py", batches)
        target = folder / "test_batch"
        if kind == "truncated pickle":
            target.write_bytes(target.read_bytes()[:-40])
        elif kind == "code in a pickle":
            target.write_bytes(pickle.dumps({b"data": _Trap(sentinel), b"labels": [0]}, protocol=2))
        elif kind == "eval in a pickle":
            target.write_bytes(b"cbuiltins\neval\n(V1 + 1\ntR.")
        else:
            target.write_bytes(pickle.dumps({b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}, protocol=2))
    match = {"truncated binary": "3073-byte records", "truncated pickle": "not a readable",
             "code in a pickle": "names the global", "eval in a pickle": "builtins.eval",
             "label out of range": "0..9", "not a batch": "uint8 array"}[kind]
    with pytest.raises(DataError, match=match):
        cifar10_images(tmp_path, n_train=PER_BATCH)
    assert sentinel.read_text() == "still here"


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 folder"):
        cifar10_images(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 batches"):
        cifar10_images(tmp_path)


def test_experiment_on_local_cifar(cifar_root, one_torch_thread):
    root, _ = cifar_root

    def tiny(channels, size):
        return nn.Sequential(nn.Conv2d(channels, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                             nn.Conv2d(3, 3, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                             nn.Linear(3 * size * size, 10))

    result = run_experiment(epochs=1, size=8, models={"tiny": tiny}, cifar=root, n_train=10)
    assert result.input_shape == (3, 8, 8) and result.dataset == str(root)
    assert [run.label for run in result.nesting["tiny"]] == ["init", "epoch 1"]
    assert sum(result.nesting["tiny"][1].counts().values()) == 3
    assert set(result.weights["tiny"]) == set(tiny(3, 8).state_dict())


def _zero_padded_cnn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(6, 6, (3, 5), padding=(1, 2)),
                          nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 2)).eval()
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2.0)
    return model


def _onnx(model, shape, path):
    torch.onnx.export(model, torch.zeros(1, *shape), str(path), dynamo=False)
    return path


def test_nesting_of_an_imported_network_equals_the_torch_models(tmp_path):
    """Kernels read back from the matrices of an ONNX import give the torch path's nesting, pair by pair;
    convolutions folded with a pooling or a linear layer are listed as not measured."""
    model = _zero_padded_cnn()
    expected = network_nesting(model, (1, 8, 8))
    for net in (pim.load(_onnx(model, (1, 8, 8), tmp_path / "cnn.onnx")), pim.load(model, input_shape=(1, 8, 8))):
        got = network_nesting(net)
        assert len(got.pairs) == 2 and got.unmeasured == tuple(net.layers[i].name for i in (3, 4))
        for mine, theirs in zip(got.pairs, expected.pairs):
            g, h = mine.geometry, theirs.geometry
            assert np.array_equal(g.connected, h.connected)  # groups=2 read from the matrix
            assert np.array_equal(g.state, h.state) and np.array_equal(g.pair_state, h.pair_state)
            assert np.array_equal(g.out_in_in, h.out_in_in) and np.array_equal(g.in_in_out, h.in_in_out)
            for name in ("distance", "opening_difference", "rotation"):
                assert np.allclose(getattr(g, name), getattr(h, name), atol=1e-5, equal_nan=True)
    # a circular network: the matrices are circulant and the layers are their own counterparts
    torch.manual_seed(1)
    circular = nn.Sequential(*(m for c in ((1, 3), (3, 3), (3, 2)) for m in
                               (nn.Conv2d(*c, 3, padding=1, padding_mode="circular"), nn.ReLU())), nn.Flatten(),
                             nn.Linear(2 * 36, 2))
    got = network_nesting(pim.load(circular, input_shape=(1, 6, 6)))
    expected = network_nesting(circular, (1, 6, 6))
    assert [np.array_equal(a.geometry.state, b.geometry.state) for a, b in zip(got.pairs, expected.pairs)] == [True] * 2


def test_kernels_that_cannot_be_read_back_are_refused():
    """On a 2 x 2 image every 3 x 3 window reaches the border: no row is the whole kernel."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ConeError, match="not shifts of each other"):
        network_nesting(pim.load(model, input_shape=(1, 2, 2)))


def test_cli_conv_runs_the_experiment_and_measures_its_weights(cifar_root, tmp_path, capsys, one_torch_thread):
    root, _ = cifar_root
    out = tmp_path / "out"
    assert main(["conv", "--cifar", str(root), "--size", "8", "--epochs", "1", "--n-train", "12", "--n-test", "4",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| lenet_style | epoch 1 |" in printed and "| vgg_style | init |" in printed
    assert (out / "nesting.md").read_text().strip() in printed
    assert (out / "nesting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = out / "vgg_style.pt"
    assert main(["conv", str(weights), str(weights), "--architecture", "vgg_style", "--input-shape", "3,8,8"]) == 0
    measured = capsys.readouterr().out
    # the trained model's table, measured again from its weights file
    section = printed.split("### vgg_style, epoch 1")[1]
    trained = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert trained.startswith("| block |") and trained.count("\n") == 6
    assert trained in measured and "net-wise, in order" in measured


def test_cli_conv_measures_an_onnx_model_and_names_bad_input(tmp_path, capsys):
    path = _onnx(_zero_padded_cnn(), (1, 8, 8), tmp_path / "cnn.onnx")
    assert main(["conv", str(path), "--out", str(tmp_path / "onnx")]) == 0
    printed = capsys.readouterr().out
    assert "/0/Conv -> /3/Conv" in printed and "not measured" in printed
    assert (tmp_path / "onnx" / "nesting.png").is_file()
    assert main(["conv", str(tmp_path / "w.pt")]) == 2
    assert "--architecture" in capsys.readouterr().err
    assert main(["conv", "--cifar", str(tmp_path / "nowhere")]) == 2
    assert "no CIFAR-10 folder" in capsys.readouterr().err


def test_conv_layer_rotation_is_exported():
    layer = ConvLayer(np.ones((1, 1, 1, 1)), [0.0], (1, 2, 2))
    assert layer.cones().rotation.tolist() == [0.0]

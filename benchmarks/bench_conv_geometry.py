"""Cone nesting statistics of every layer pair of a VGG-style 9-layer CNN, beside a per-pair dense loop."""

from __future__ import annotations

import time

import numpy as np
from common import table, timed

from preimage.conv import ConvLayer, network_nesting, slice_cones, slice_lines, slice_region_count
from preimage.conv.experiment import digits_images, vgg_style
from preimage.conv.network import conv_blocks


def _dense_pair_loop(out_kernels, in_kernels, out_bias, in_bias, pairs):
    """The reference code's way, one pair at a time: a dense circulant per filter, apex, opening and the
    smallest angle between its rows and the other filter (parts along the identity line removed)."""
    n = out_kernels[0].size
    root = np.sqrt(n)
    for o, c in pairs:
        a, b = out_kernels[o].ravel(), in_kernels[c].ravel()
        rows = np.stack([np.roll(a, shift) for shift in range(n)])
        apex_out, apex_in = -out_bias[o] / a.sum(), -in_bias[c] / b.sum()
        distance = np.sign(b.sum()) * (apex_out - apex_in) * root
        opening = (np.arcsin(abs(rows[0].sum()) / (np.linalg.norm(rows[0]) * root))
                   - np.arcsin(abs(b.sum()) / (np.linalg.norm(b) * root)))
        rows_perp = rows - rows.mean(axis=1, keepdims=True)
        b_perp = b - b.mean()
        cosine = rows_perp @ b_perp / (np.linalg.norm(rows_perp, axis=1) * np.linalg.norm(b_perp))
        rotation = np.arccos(np.clip(cosine.max(), -1, 1))
    return distance, opening, rotation


def run(repeat: int = 5, sample_pairs: int = 64) -> str:
    import torch

    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = vgg_style(channels=3, size=32, widths=(64, 128, 256))
    seconds, result = timed(lambda: network_nesting(model, shape), repeat)
    n_pairs = sum(int(p.geometry.connected.sum()) for p in result.pairs)

    rng = np.random.default_rng(0)
    loop_seconds = 0.0
    for block in conv_blocks(model, shape):
        cones = [slice_cones(layer.periodic() if not layer.is_circulant else layer) for layer in block]
        for inner, outer in zip(cones[:-1], cones[1:]):
            c_out, c_in = len(outer.bias), len(inner.bias)
            picks = [(int(rng.integers(c_out)), int(rng.integers(c_in))) for _ in range(sample_pairs)]
            start = time.perf_counter()
            _dense_pair_loop(outer.kernels, inner.kernels, outer.bias, inner.bias, picks)
            loop_seconds += (time.perf_counter() - start) / sample_pairs * c_out * c_in

    second = conv_blocks(model, shape)[0][1].periodic()
    cone_seconds, cones = timed(second.cones, repeat)
    n_facets = second.matrix.shape[0]

    torch.manual_seed(0)
    full = conv_blocks(vgg_style(size=16), (1, 16, 16))[0][0]
    first = ConvLayer(full.weight[:6], full.bias[:6], full.input_shape, full.stride, full.padding, full.dilation,
                      1, full.padding_mode, "conv 1, 6 channels")
    images = digits_images(16)[0][:3].double().numpy().reshape(3, -1)
    origin, u, v = images[0] + 0.5 * (images[1] - images[0]) + 0.5 * (images[2] - images[0]), \
        images[1] - images[0], images[2] - images[0]
    window = ((-1.0, 1.0), (-1.0, 1.0))
    region_seconds, regions = timed(lambda: slice_region_count(first, origin, u, v, window), repeat)
    lines = slice_lines(first, origin, u, v, window).coefficients
    peer_cell, peer_ratio = "regioncam not installed", "-"
    try:
        import regioncam

        def partition():
            cam = regioncam.Regioncam(1.0)
            cam.linear(np.ascontiguousarray(lines[:, :2].T, dtype=np.float32),
                       np.ascontiguousarray(lines[:, 2], dtype=np.float32))
            cam.relu()
            return cam.num_faces

        peer_seconds, faces = timed(partition, max(1, repeat // 2))
        peer_cell = f"{peer_seconds:.2f} s (regioncam: {faces} faces)"
        peer_ratio = f"{peer_seconds / region_seconds:.0f}x"
    except ImportError:
        pass

    rows = [
        [f"nesting, all {len(result.pairs)} layer pairs ({n_pairs} channel pairs), 3 x 32 x 32",
         f"{seconds:.3f} s", f"{loop_seconds:.1f} s (per-pair dense loop, 1 process, extrapolated)",
         f"{loop_seconds / seconds:.0f}x"],
        [f"cones of conv 2 (64 -> 64 channels, 3 x 32 x 32 CNN, circular): apex, opening and rotation of "
         f"all {n_facets} facets ({second.matrix.nnz} nonzeros), largest rotation {cones.rotation.max():.3f} rad",
         f"{cone_seconds:.3f} s", "-", "-"],
        [f"regions of a circular 3 x 3 conv layer (6 channels, 1536 units, digits VGG) on the slice through 3 "
         f"upsampled digits: {regions}", f"{region_seconds:.3f} s", peer_cell, peer_ratio],
    ]
    return ("## Geometry of convolutional layers\n\n"
            "`pim.conv.network_nesting(model, (3, 32, 32))` on a VGG-style 9-layer CNN at the seed study's scale "
            "(eight 3 x 3 convolutions of 64, 64, 64 | 128, 128, 128 | 256, 256 channels, max pooling between "
            "blocks, one Linear): every channel pair of every layer pair inside a block gets its signed apex "
            "distance, opening difference, rotation (minimum over all circular shifts) and exact containment both "
            "ways, and every channel its state; vectorised with FFTs over all pairs at once, one process. "
            f"Median of {repeat} runs. magamba/cones computes these with 16 MPI processes and publishes no timing; "
            "its per-pair dense approach, reimplemented as a loop over pairs (dense n x n circulant per pair, "
            f"without the n x n shear products the reference code adds), timed on {sample_pairs} random pairs "
            "of each layer pair and scaled to all of them, stands beside ours. Slice regions: "
            "`pim.conv.slice_region_count` (exact count of the line arrangement, float64) beside regioncam's 2-D "
            "partition (float32) of the same lines on the same window; regioncam's few extra faces come from "
            "points where three or more lines cross exactly (our count is the same for tolerances 1e-12 to 1e-7), "
            "which float32 splits into slivers.\n\n"
            + table(["task", "preimage median", "peer", "peer / ours"], rows) + "\n")


def experiment(epochs: int = 5) -> str:
    """The digits experiment (LeNet-style and VGG-style CNN, init and every epoch), its table and plot."""
    from common import ROOT

    from preimage.conv.experiment import run_experiment
    from preimage.viz.conv_plot import plot_experiment

    start = time.perf_counter()
    result = run_experiment(epochs=epochs)
    seconds = time.perf_counter() - start
    plot_experiment(result, ROOT / "benchmarks" / "results" / "conv_geometry_nesting.png")
    per_pair = "\n\n".join(f"{name}, {runs[-1].label}:\n\n{runs[-1].to_markdown()}"
                            for name, runs in result.nesting.items())
    return ("### Experiment: digits upsampled to 16 x 16\n\n"
            f"`run_experiment(epochs={epochs})`, training and all measurements in {seconds:.0f} s. Net-wise "
            "fractions of channel states at init and after training (plot: `conv_geometry_nesting.png`):\n\n"
            + result.to_markdown() + "\n\nPer layer pair after training:\n\n" + per_pair + "\n")


if __name__ == "__main__":
    import sys

    from common import ROOT, machine

    from preimage._io import write_atomic

    text = run()
    if "--write" in sys.argv:
        text += "\n" + experiment()
        text = f"Machine: {machine()}\n\n" + text
        write_atomic(ROOT / "benchmarks" / "results" / "conv_geometry.md", text)
    print(text)

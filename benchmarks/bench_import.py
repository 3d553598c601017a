"""Importing the public benchmark networks, beside onnxruntime building a session for the same file."""

from __future__ import annotations

import statistics

from common import SHARED, ms, table, timed

import preimage as pim


def _onnxruntime_session(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(repeat: int = 5) -> str:
    if not SHARED.is_dir():
        return "## Network import\n\nskipped: ../shared/benchmarks is absent.\n"
    acas = sorted((SHARED / "acasxu").glob("ACASXU_run2a_*.onnx"))
    ours, peer = [], []
    for path in acas:
        t, _ = timed(lambda: pim.load(path), repeat)
        ours.append(t)
        t, _ = timed(lambda: _onnxruntime_session(path), repeat)
        peer.append(t)
    rows = [[f"ACAS Xu, {len(acas)} networks (per network)", ms(statistics.median(ours)), ms(max(ours)),
             ms(statistics.median(peer)), f"{statistics.median(peer) / statistics.median(ours):.1f}x"]]
    others = [SHARED / "vcas" / "VertCAS_21_1.onnx", SHARED / "vcas" / "VertCAS_pra01_v4_45HU_200.nnet",
              SHARED / "control" / "dubinsrejoin.onnx", SHARED / "mnistfc" / "mnist-net_256x4.onnx",
              SHARED / "mnistcnn" / "mnist_0.1.onnx"]
    for path in others:
        t, net = timed(lambda: pim.load(path), repeat)
        if path.suffix == ".onnx":
            p, _ = timed(lambda: _onnxruntime_session(path), repeat)
            peer_cell, ratio = ms(p), f"{p / t:.1f}x"
        else:
            peer_cell, ratio = "-", "-"
        rows.append([f"{path.name} ({net.input_dim} -> {net.output_dim}, {len(net)} layers)", ms(t), ms(t),
                     peer_cell, ratio])
    return ("## Network import\n\n"
            "`pim.load(path)`: parse, fold constants and affine chains, build sparse conv operators, float64. "
            "Peer: `onnxruntime.InferenceSession(path)` on the same file (1 thread). Median of "
            f"{repeat} runs per file.\n\n"
            + table(["networks", "preimage median", "preimage max", "onnxruntime session", "peer / ours"], rows)
            + "\n")


if __name__ == "__main__":
    print(run())

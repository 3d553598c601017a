"""Exact preimages (`pim.preimage`) on the shared benchmarks, with nnenum run beside it on the ACAS Xu rows.

VerticalCAS, the control policies and ACAS Xu, with the boxes of ../shared/benchmarks/README.md. Every
complete result is checked by `verify` (forward passes on sampled points of the box). nnenum runs as a
separate process from its own virtual environment (``.venv-nnenum``, made from
../shared/peers/requirements-nnenum.txt when missing): its verification verdict and time, and on two rows its
exact partition of the box.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, SHARED, table
from threadpoolctl import threadpool_limits

import preimage as pim
from preimage.preimages import compile_target, satisfies

PEERS = ROOT.parent / "shared" / "peers"
PEER_VENV = ROOT / ".venv-nnenum"

VCAS_BOX = [(-0.5, 0.5), (-0.5, 0.5), (0.1499, 0.1501), (-0.5, 0.5)]
VCAS_BOX_PREMAP = [(-0.5, 0.5), (-0.5, 0.5), (0.149, 0.151), (-0.5, 0.5)]
CONTROL = {
    "cartpole": ([(-0.5, 0.5), (-1, 1), (-0.1, 0.1), (-1, 1)], 0, "PREMAP 25-32 s for 75.2 %", "exact, under 30 s"),
    "lunarlander": ([(-1, 0), (0, 1), (0, 2), (-1, 0), (-1, 0), (-1, 0), (0.5, 1), (0.5, 1)], 1,
                    "PREMAP 65-85 s for 75.1 %", "exact, under 85 s"),
    "dubinsrejoin": ([(-0.5, 0), (0, 0.5), (-1, -0.5), (0, 0.5), (0.4, 0.6), (-0.5, 0), (0, 0.5), (-0.5, 0)], 0,
                     "PREMAP 348-656 s for 75-79 %", "inner >= 90 % within 600 s"),
}


def _box(sides):
    lo, hi = np.array(sides, dtype=np.float64).T
    return pim.Box(lo, hi)


def _solve(net, target, domain, seconds):
    start = time.perf_counter()
    result = pim.preimage(net, target, domain, budget=pim.Budget(seconds=seconds), progress=False)
    return time.perf_counter() - start, result


def _checked(result, n=2000):
    if not result.complete or not result.pieces:
        return "-"
    found = result.verify(n, rng=0)
    return "ok" if found.ok else f"{int(np.sum(found.distances > found.band))} off the band"


def _fraction(result, box) -> str:
    """Exact volume fractions in up to 6 dimensions; above, the share of 20,000 uniform points of the box."""
    if box.dim <= 6:
        if result.complete:
            return f"{100 * result.fraction().value:.4g} %"
        inner, outer = result.inner.fraction().value, result.outer.fraction().value
    else:
        X = box.sample(20000, rng=0)
        inner = result.inner.contains(X).mean() if result.pieces else 0.0
        if result.complete:
            return f"{100 * inner:.3g} % (of 20,000 samples)"
        outer = result.outer.contains(X).mean()
        # The true share by the network's own forward pass on the same points: coverage = inner / true.
        true = float(np.mean(satisfies(compile_target(result.target, result.net), result.net, X)))
        return (f"inner {100 * inner:.4g} %, outer {100 * outer:.4g} %, true {100 * true:.4g} % (forward pass); "
                f"coverage {100 * inner / max(true, 1e-300):.1f} %, of 20,000 samples")
    return f"inner {100 * inner:.4g} %, outer {100 * outer:.4g} % (inner/outer {100 * inner / max(outer, 1e-300):.1f} %)"


def _peer_python() -> Path | None:
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                        str(PEERS / "requirements-nnenum.txt")], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError):
        return None
    return python


def _nnenum(script: str, net_path: Path, prop: Path, timeout: float) -> tuple[str, float | None]:
    python = _peer_python()
    if python is None:
        return "not run (its venv could not be built)", None
    env = dict(os.environ, PYTHONPATH=str(PEERS / "nnenum" / "src"), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    args = [str(python), str(PEERS / script), str(net_path), str(prop)]
    if script == "nnenum_verify.py":
        args.append(str(timeout))
    try:
        lines = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout + 60).stdout.splitlines()
    except subprocess.TimeoutExpired:
        return f"timeout {timeout:.0f} s", None
    out = lines[-1].split() if lines else []
    if "wall" not in out or out.index("wall") + 1 >= len(out):
        return "failed", None
    wall = float(out[out.index("wall") + 1].rstrip("s"))
    return " ".join(out[: out.index("wall")]), wall


def _vcas_rows():
    rows = []
    for label, sides in (("[0.1499, 0.1501]", VCAS_BOX), ("[0.149, 0.151] (PREMAP's code)", VCAS_BOX_PREMAP)):
        times, pieces, fractions, checks = [], 0, [], []
        for k in range(1, 10):
            net = pim.load(SHARED / "vcas" / f"VertCAS_21_{k}.onnx")
            seconds, result = _solve(net, pim.ArgMax(0), _box(sides), 60.0)
            times.append(seconds)
            pieces += len(result.pieces)
            fractions.append(result.fraction().value if result.complete else float("nan"))
            checks.append(_checked(result))
        complete = sum(np.isfinite(fractions))
        rows.append([f"VerticalCAS 21_1..9, third input {label}", "PREMAP 7.5-12.8 s each for ~91 %; "
                     "exact (Matoba) 6352 s", "all 9 exact, together under 1 s",
                     f"{complete}/9 exact, {pieces} pieces, {100 * np.nanmin(fractions):.3g}-"
                     f"{100 * np.nanmax(fractions):.3g} % of the box", f"{sum(times):.2f} s total "
                     f"(median {statistics.median(times) * 1e3:.0f} ms)",
                     "ok" if all(c == "ok" for c in checks) else ", ".join(checks)])
    return rows


def _control_rows(seconds: dict):
    rows = []
    for name, (sides, label, peer, goal) in CONTROL.items():
        net = pim.load(SHARED / "control" / f"{name}.onnx")
        wall, result = _solve(net, pim.ArgMax(label), _box(sides), seconds[name])
        rows.append([f"{name}, label {label}", peer, goal,
                     f"{'exact' if result.complete else 'budget ' + format(seconds[name], '.0f') + ' s'}, "
                     f"{len(result.pieces)} pieces, {_fraction(result, _box(sides))}", f"{wall:.2f} s", _checked(result)])
    return rows


def _acas_rows(exact_peer: bool):
    rows = []
    cases = [((1, 1), 1, "nnenum exact partition 70 s, 39,835 pieces; its verification 0.6 s", "empty, under 0.4 s"),
             ((1, 2), 2, "nnenum exact partition 92 s, 45,648 pieces", "exact unsafe set under 3 s")]
    for (i, j), prop, quoted, goal in cases:
        net_path = SHARED / "acasxu" / f"ACASXU_run2a_{i}_{j}_batch_2000.onnx"
        prop_path = SHARED / "acasxu" / f"prop_{prop}.vnnlib"
        net = pim.load(net_path)
        domain, target = pim.read_vnnlib(prop_path)
        wall, result = _solve(net, target, domain, 120.0)
        verdict, peer_wall = _nnenum("nnenum_verify.py", net_path, prop_path, 120.0)
        peer = f"verification: {verdict} in {peer_wall:.2f} s" if peer_wall is not None else f"verification {verdict}"
        if exact_peer:
            pieces, exact_wall = _nnenum("nnenum_exact.py", net_path, prop_path, 300.0)
            peer += (f"; exact partition: {pieces} in {exact_wall:.1f} s ({exact_wall / wall:.1f}x ours)"
                     if exact_wall is not None else f"; exact partition {pieces}")
        kind = "empty (proven)" if result.complete and not result.pieces else (
            f"exact, {len(result.pieces)} pieces, {_fraction(result, domain)}" if result.complete else _fraction(result, domain))
        rows.append([f"ACAS Xu N{i}_{j}, prop_{prop}", f"{quoted} (quoted); measured now: {peer}", goal, kind,
                     f"{wall:.2f} s", _checked(result)])
    return rows


def run(exact_peer: bool = True, seconds: dict | None = None) -> str:
    seconds = seconds or {"cartpole": 60.0, "lunarlander": 85.0, "dubinsrejoin": 600.0}
    with threadpool_limits(1):
        rows = _vcas_rows() + _control_rows(seconds) + _acas_rows(exact_peer)
    text = ("## Exact preimages\n\n`pim.preimage(net, target, box)`: branch and prune with batched bounds; boxes of "
            "up to 8 inputs are searched with the vertices of every subdomain (no LPs). One thread, one run per "
            "case (wall time includes building the minimal H-form and the witness of every piece). *verify*: "
            "2000 sampled points of the box, `contains` against the forward pass (every disagreement must lie "
            "on a piece boundary). nnenum runs beside it on the ACAS Xu rows, as a separate process with one "
            "thread. Budgets: control policies " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) +
            "; a row that ran out of budget gives the certified inner and outer fractions.\n\n")
    text += table(["case", "peer", "goal", "result", "time", "verify"], rows) + "\n"
    return text


if __name__ == "__main__":
    print(run())

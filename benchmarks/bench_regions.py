"""Exact 2-D partitions into linear regions: `pim.slice2d` beside regioncam on the same nets and planes.

Every case runs in a child process of its own, so that its peak memory (ru_maxrss) is its own; the child
first partitions a small slice (the compiled kernels load, not timed), then times the case. Networks:
torch default initialisation, ``torch.manual_seed(seed)``, ``Linear`` + ``ReLU`` blocks of the named
widths (regioncam's convention of the issue's figures). regioncam computes in float32, `slice2d` in
float64; a count that differs by a region or two is a sliver of area ~1e-12 that float32 cannot resolve
(every region `slice2d` reports has a witness whose forward pass has its pattern).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import SHARED, table

HERE = Path(__file__).resolve().parent
MNIST = SHARED / "mnistcnn"

CASES = {
    "2->64x3": dict(widths=(64,) * 3, radius=1.0, seed=11, repeat=5),
    "2->128x4": dict(widths=(128,) * 4, radius=2.0, seed=11, repeat=3),
    "2->256x4": dict(widths=(256,) * 4, radius=2.0, seed=11, repeat=1),
    "2->512x3": dict(widths=(512,) * 3, radius=2.0, seed=11, repeat=1, peer=False),
    "MNIST plane, 784->256x3": dict(widths=(256,) * 3, seed=0, inputs=784, mnist=True, repeat=1),
    "MNIST plane, conv mnist_0.1.onnx": dict(conv=True, repeat=1, peer=False),
}


def _model(spec):
    import torch

    torch.manual_seed(spec["seed"])
    modules, d = [], spec.get("inputs", 2)
    for w in spec["widths"]:
        modules += [torch.nn.Linear(d, w), torch.nn.ReLU()]
        d = w
    if spec.get("outputs"):
        modules.append(torch.nn.Linear(d, spec["outputs"]))
    return torch.nn.Sequential(*modules).eval()


def _mnist_plane():
    """regioncam's plane through the first three test images (pixels / 255): origin, u, v, half-width."""
    import numpy as np
    import regioncam

    images = np.loadtxt(MNIST / "mnist_test.csv", delimiter=",", max_rows=3)[:, 1:] / 255.0
    cam = regioncam.Regioncam.through_points(images.astype(np.float32))
    plane = cam.plane
    half = float(np.abs(cam.vertex_inputs).max())
    return (np.asarray(plane.bias, dtype=np.float64), np.asarray(plane.weight[0], dtype=np.float64),
            np.asarray(plane.weight[1], dtype=np.float64), half, images)


ENUMERATION = dict(widths=(32,) * 3, seed=0, outputs=1)
RELUCENT_SECONDS, RELUCENT_REGIONS = 214.0, 5355


def _enumerate(seconds: float) -> dict:
    """``pim.regions`` on the whole plane of 2->32x3->1 (seed 0) within a time budget."""
    import preimage as pim

    net = pim.load(_model(ENUMERATION))
    start = time.perf_counter()
    graph = pim.regions(net, None, budget=pim.Budget(seconds=seconds))
    return {"regions": len(graph), "complete": graph.complete, "seconds": time.perf_counter() - start,
            "edges": graph.graph.number_of_edges(),
            "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _child(name: str, tool: str) -> dict:
    import numpy as np

    if tool == "enumerate":
        return _enumerate(float(name))
    spec = CASES[name]
    if tool == "regioncam":
        import regioncam

        model = _model(spec)

        def job():
            if spec.get("mnist"):
                cam = regioncam.Regioncam.through_points(_mnist_plane()[4].astype(np.float32))
            else:
                cam = regioncam.Regioncam(size=spec["radius"])
            cam.add(model)
            return cam.num_faces
    else:
        import preimage as pim

        if spec.get("conv"):
            net = pim.load(MNIST / "mnist_0.1.onnx")
            images = np.loadtxt(MNIST / "mnist_test.csv", delimiter=",", max_rows=3)[:, 1:] / 255.0

            def job():
                return len(pim.plane_through(net, *images))
        else:
            net = pim.load(_model(spec))
            if spec.get("mnist"):
                origin, u, v, half, _ = _mnist_plane()
            else:
                d = net.input_dim
                origin, u, v, half = np.zeros(d), np.eye(d)[0], np.eye(d)[1], spec["radius"]

            def job():
                return len(pim.slice2d(net, origin, u, v, ((-half, half), (-half, half))))
        pim.slice2d(net, np.zeros(net.input_dim), np.eye(net.input_dim)[0], np.eye(net.input_dim)[1],
                    ((-1e-3, 1e-3), (-1e-3, 1e-3)))
    from threadpoolctl import threadpool_limits

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times, count = [], None
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(spec["repeat"]):
            start = time.perf_counter()
            count = job()
            times.append(time.perf_counter() - start)
    return {"regions": int(count), "seconds": statistics.median(times), "baseline_gb": baseline,
            "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _spawn(name: str, tool: str, memory_gb: float, timeout: float) -> dict | None:
    command = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--tool", tool,
               "--memory-gb", str(memory_gb)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"error": f"failed ({last[:80]})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(result) -> tuple[str, str, str]:
    if result is None:
        return "not run", "", ""
    if "error" in result:
        return result["error"], "", ""
    return f"{result['regions']:,}", f"{result['seconds']:.3g} s", f"{result['maxrss_gb']:.2f} GB"


def run(cases=None, memory_gb: float = 14.0, timeout: float = 900.0, enumeration_seconds: float = 240.0) -> str:
    rows = []
    for name in cases or CASES:
        spec = CASES[name]
        ours = _spawn(name, "ours", memory_gb, timeout)
        peer = _spawn(name, "regioncam", memory_gb, timeout) if spec.get("peer", True) else None
        ratio = ""
        if ours and peer and "error" not in ours and "error" not in peer:
            ratio = f"{ours['seconds'] / peer['seconds']:.2f}"
        per_region = ""
        if ours and "error" not in ours:
            above = ours["maxrss_gb"] - ours["baseline_gb"]
            per_region = (f"{ours['maxrss_gb'] * 2**30 / ours['regions'] / 1024:.1f} KB / "
                          f"{above * 2**30 / ours['regions'] / 1024:.1f} KB")
        rows.append([name, *_cell(ours), per_region, *_cell(peer), ratio])
    header = ["case", "regions", "time", "peak memory", "memory per region: all / above start", "regioncam regions",
              "regioncam time", "regioncam memory", "ratio"]
    return ("## Linear regions: exact 2-D slices (`pim.slice2d`) beside regioncam\n\n"
            "Each cell is one child process: regions found, median wall time (5 runs for 2->64x3, 3 for "
            "2->128x4, else 1), peak resident memory (ru_maxrss, the interpreter and torch included); memory per "
            "region: that peak over the regions, and the part above the child's peak before the case (imports, "
            "compiled kernels loaded) over the regions. "
            "Nets: `Linear`+`ReLU` blocks, torch default initialisation, `torch.manual_seed(11)` (MNIST MLP: "
            "seed 0), input square [-r, r]^2. MNIST plane: regioncam's `through_points` plane through the first "
            "three test images of `mnist_test.csv` (pixels / 255), and `slice2d` on the same origin, "
            "directions and square; one BLAS thread for both (regioncam's matrix products are its own). "
            "The conv row is `pim.plane_through` the same three images on "
            "`mnist_0.1.onnx` (regioncam has no convolutions); 2->512x3 is not given to regioncam (it runs out "
            f"of 24 GB). Children are limited to {memory_gb:g} GB of address space. `slice2d` is float64, "
            "regioncam float32. Ratio: our time over regioncam's.\n\n"
            + table(header, rows)
            + "\n" + _enumeration_section(memory_gb, enumeration_seconds, timeout))


def _enumeration_section(memory_gb: float, seconds: float, timeout: float) -> str:
    result = _spawn(str(seconds), "enumerate", memory_gb, timeout)
    if "error" in result:
        found = result["error"]
    else:
        found = (f"{result['regions']:,} regions, {result['edges']:,} adjacencies, "
                 f"{'complete' if result['complete'] else 'incomplete (budget)'}, {result['seconds']:.1f} s, "
                 f"{result['maxrss_gb']:.2f} GB; {RELUCENT_SECONDS / result['seconds']:.0f}x faster than relucent's "
                 f"figure (goal 50x, same count: {'yes' if result['regions'] == RELUCENT_REGIONS else 'NO'})")
    return ("\n### Every region of the whole plane: `pim.regions(net, None)`\n\n"
            "2->32x3->1 (`Linear`+`ReLU` x3, `Linear(32, 1)`, `torch.manual_seed(0)`), all of R^2, unbounded "
            "regions included: the square [-R, R]^2 and the four charts at infinity of the homogenised network, "
            f"each partitioned exactly by `slice2d`, facets read off the pieces (budget {seconds:g} s): "
            f"{found}. Peer figure from the issue (relucent's BFS, not installable here: it needs gurobipy): "
            "5,355 regions in 214 s.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", default=None, help="run one case in this process and print JSON")
    parser.add_argument("--tool", default="ours", choices=("ours", "regioncam", "enumerate"),
                        help="enumerate: --case is the time budget in seconds of the whole-plane enumeration")
    parser.add_argument("--memory-gb", type=float, default=14.0)
    parser.add_argument("--out", default=None, help="write the markdown section to this file")
    args = parser.parse_args()
    if args.case is not None:
        limit = int(args.memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(_child(args.case, args.tool)))
        return
    text = run(memory_gb=args.memory_gb)
    if args.out:
        sys.path.insert(0, str(HERE.parent / "src"))
        from preimage._io import write_atomic

        write_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

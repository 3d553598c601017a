"""Run every benchmark and write BENCHMARKS.md (machine, date, medians, ratios to the peers)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_conv_geometry  # noqa: E402
import bench_import  # noqa: E402
import bench_inverse  # noqa: E402
import bench_layer_preimage  # noqa: E402
import bench_regions  # noqa: E402
import bench_lp  # noqa: E402
import bench_patterns  # noqa: E402
import bench_sampling  # noqa: E402
from common import ROOT, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=1000, help="inputs of the layer-preimage benchmark")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    sections = [bench_import.run(), bench_layer_preimage.run(n_inputs=args.inputs), bench_lp.run(), bench_sampling.run(),
                bench_inverse.run(), bench_patterns.run(), bench_conv_geometry.run(), bench_regions.run()]
    text = "# Benchmarks\n\nMachine: " + machine() + "\n\nWritten by `make bench` (benchmarks/run.py).\n\n"
    text += "\n".join(sections)
    out = Path(args.out)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".BENCHMARKS.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, out)
    print(text)


if __name__ == "__main__":
    main()

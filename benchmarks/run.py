"""Run the benchmarks and write BENCHMARKS.md (machine, date, medians, ratios to the peers).

Every topic writes its section to ``benchmarks/results/<topic>.md``; BENCHMARKS.md is those sections in
one order. ``--only TOPIC,...`` reruns some topics and keeps the others' last results; ``--assemble``
runs nothing and rebuilds BENCHMARKS.md from the results folder. The ACAS Xu sweep (180 cases beside
nnenum, about an hour) resumes from ``results/acas_sweep.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# (topic, module, how its run() is called): the order of BENCHMARKS.md.
TOPICS = ["import", "layer_preimage", "lp", "sampling", "preimage", "acas_sweep", "regions", "inverse",
          "patterns", "conv_geometry"]


def _run_topic(topic: str, args) -> str:
    module = __import__(f"bench_{topic}")
    if topic == "layer_preimage":
        return module.run(n_inputs=args.inputs)
    return module.run()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _heading_first(section: str) -> str:
    """A section with its ``## `` heading first and its ``Machine:`` line under it."""
    lines = section.strip().split("\n")
    heading = next((i for i, line in enumerate(lines) if line.startswith("## ")), None)
    if heading:
        machine_lines = [line for line in lines[:heading] if line.startswith("Machine:")]
        rest = [line for line in lines[:heading] if line.strip() and not line.startswith("Machine:")]
        lines = [lines[heading], ""] + machine_lines + [""] * bool(machine_lines) + rest + lines[heading + 1:]
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def assemble(out: Path) -> str:
    parts = []
    for topic in TOPICS:
        path = RESULTS / f"{topic}.md"
        if path.exists():
            parts.append(_heading_first(path.read_text()))
    text = ("# Benchmarks\n\nMachine: " + machine() + "\n\nWritten by `make bench` (benchmarks/run.py) from the "
            "sections in benchmarks/results/, each dated where it was run on another day. The machine has 2 "
            "cores, often shared with other jobs while a section ran: wall times are upper bounds.\n\n")
    text += "\n".join(parts)
    _write_atomic(out, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000, help="inputs of the layer-preimage benchmark")
    parser.add_argument("--only", default=None, help=f"comma-separated topics of {', '.join(TOPICS)}")
    parser.add_argument("--assemble", action="store_true", help="rebuild BENCHMARKS.md from results/ only")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    chosen = [] if args.assemble else (TOPICS if args.only is None else args.only.split(","))
    unknown = sorted(set(chosen) - set(TOPICS))
    if unknown:
        parser.error(f"unknown topics {unknown}; choose from {TOPICS}")
    RESULTS.mkdir(exist_ok=True)
    for topic in chosen:
        section = _run_topic(topic, args)
        if "Machine:" not in section:
            section = f"Machine: {machine()}\n\n{section}"
        _write_atomic(RESULTS / f"{topic}.md", section)
    print(assemble(Path(args.out)))


if __name__ == "__main__":
    main()

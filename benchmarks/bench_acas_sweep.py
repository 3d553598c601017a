"""All 45 ACAS Xu networks x properties 1-4: exact unsafe sets (`pim.preimage`) beside nnenum's verdicts.

Each case runs our search with a budget of 60 s (one thread) and nnenum's verification (one process, one
thread, its default settings, timeout 120 s) as a separate process, one after the other. Our verdict:
*safe* when the search is complete with no piece (the unsafe set is proven empty), *unsafe* when a piece
with a checked witness was found; the time to the verdict is the time of the first piece (unsafe) or of
the whole search (safe). The time to the set is the whole search: exact, or stopped by the budget with
certified inner and outer bounds. Results are appended to ``results/acas_sweep.jsonl`` case by case, so an
interrupted sweep resumes where it stopped; the markdown goes to ``results/acas_sweep.md``.

Usage: python benchmarks/bench_acas_sweep.py [--seconds 60] [--peer-timeout 120] [--nets 1_1,2_3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_preimage import _nnenum  # noqa: E402
from common import ROOT, SHARED, machine, table  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import preimage as pim  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LOG = RESULTS / "acas_sweep.jsonl"
NETS = [(i, j) for i in range(1, 6) for j in range(1, 10)]
PROPS = (1, 2, 3, 4)


def _case(i: int, j: int, prop: int, seconds: float, peer_timeout: float) -> dict:
    net_path = SHARED / "acasxu" / f"ACASXU_run2a_{i}_{j}_batch_2000.onnx"
    prop_path = SHARED / "acasxu" / f"prop_{prop}.vnnlib"
    net = pim.load(net_path)
    domain, target = pim.read_vnnlib(prop_path)
    with threadpool_limits(1):
        start = time.perf_counter()
        result = pim.preimage(net, target, domain, budget=pim.Budget(seconds=seconds), progress=False)
        wall = time.perf_counter() - start
    checked = all(piece.checked for piece in result.pieces)
    if result.pieces and checked:
        verdict, to_verdict = "unsafe", float(result.stats["first_piece_seconds"])
    elif result.complete and not result.pieces:
        verdict, to_verdict = "safe", wall
    else:
        verdict, to_verdict = "unknown", wall
    sample_check = "-"
    if result.complete and result.pieces:
        found = result.verify(1000, rng=0)
        sample_check = "ok" if found.ok else f"{int(np.sum(found.distances > found.band))} off the band"
    peer_verdict, peer_wall = _nnenum("nnenum_verify.py", net_path, prop_path, peer_timeout)
    return {"net": f"{i}_{j}", "prop": prop, "verdict": verdict, "to_verdict": to_verdict, "wall": wall,
            "complete": bool(result.complete), "pieces": len(result.pieces), "undecided": len(result.undecided),
            "verify": sample_check, "peer_verdict": peer_verdict.replace("verdict ", ""), "peer_wall": peer_wall}


def _load() -> dict:
    done = {}
    if LOG.exists():
        for line in LOG.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(row["net"], row["prop"])] = row
    return done


def _report(rows: list[dict], seconds: float, peer_timeout: float) -> str:
    decided_peer = [r for r in rows if r["peer_verdict"] in ("safe", "unsafe")]
    agree = sum(r["verdict"] == r["peer_verdict"] for r in decided_peer)
    decided_ours = sum(r["verdict"] in ("safe", "unsafe") for r in rows)
    ours_total = sum(r["to_verdict"] for r in rows)
    set_total = sum(r["wall"] for r in rows)
    peer_total = sum(r["peer_wall"] if r["peer_wall"] is not None else peer_timeout for r in rows)
    unsafe = [r for r in rows if r["verdict"] == "unsafe"]
    exact_unsafe = [r for r in unsafe if r["complete"]]
    lines = ["## ACAS Xu: 45 networks x properties 1-4 beside nnenum", "",
             f"Machine: {machine()}", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"{len(rows)} cases, {decided_ours} decided by us, {len(decided_peer)} by nnenum (it returns "
             f"*unknown* on the others). Same verdict in {agree} of the {len(decided_peer)} cases nnenum "
             f"decided. Time to the verdict, all cases: ours {ours_total:.1f} s, "
             f"nnenum {peer_total:.1f} s (ratio {ours_total / max(peer_total, 1e-9):.2f}; median per case "
             f"{statistics.median(r['to_verdict'] for r in rows):.3f} s vs "
             f"{statistics.median(r['peer_wall'] or peer_timeout for r in rows):.3f} s). Time to the sets "
             f"(exact, or the {seconds:.0f} s budget): {set_total:.1f} s in all. Unsafe cases: {len(unsafe)}, "
             f"of which {len(exact_unsafe)} exact within {seconds:.0f} s and {len(unsafe) - len(exact_unsafe)} "
             "certified inner/outer at the budget. Every exact non-empty set passed `verify(1000)` unless "
             "the table says otherwise.", ""]
    body = []
    for r in rows:
        kind = ("empty (proven)" if r["verdict"] == "safe" else
                f"exact, {r['pieces']:,} pieces" if r["complete"] else
                f"inner {r['pieces']:,} pieces, {r['undecided']:,} undecided")
        peer = f"{r['peer_verdict']} {r['peer_wall']:.2f} s" if r["peer_wall"] is not None else r["peer_verdict"]
        body.append([f"N{r['net']} prop_{r['prop']}", r["verdict"], f"{r['to_verdict']:.3f} s", kind,
                     f"{r['wall']:.2f} s", r["verify"], peer,
                     "yes" if r["verdict"] == r["peer_verdict"] else
                     "- (nnenum undecided)" if r["peer_verdict"] not in ("safe", "unsafe") else "**no**"])
    lines.append(table(["case", "verdict", "to verdict", "set", "to set", "verify", "nnenum", "same"], body))
    return "\n".join(lines) + "\n"


def run(seconds: float = 60.0, peer_timeout: float = 120.0, nets=None) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = _load()
    chosen = NETS if nets is None else nets
    for i, j in chosen:
        for prop in PROPS:
            if (f"{i}_{j}", prop) in done:
                continue
            row = _case(i, j, prop, seconds, peer_timeout)
            with open(LOG, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            done[(row["net"], row["prop"])] = row
            print(json.dumps(row), flush=True)
    rows = [done[(f"{i}_{j}", p)] for i, j in chosen for p in PROPS]
    text = _report(rows, seconds, peer_timeout)
    (RESULTS / "acas_sweep.md").write_text(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--peer-timeout", type=float, default=120.0)
    parser.add_argument("--nets", default=None, help="comma-separated, e.g. 1_1,2_3 (default: all 45)")
    args = parser.parse_args()
    nets = None if args.nets is None else [tuple(int(x) for x in n.split("_")) for n in args.nets.split(",")]
    print(run(args.seconds, args.peer_timeout, nets))

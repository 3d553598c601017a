"""A library says nothing: importing preimage and solving LPs writes nothing to stdout or stderr.

Run in fresh interpreters, because HiGHS prints its banner once per process, straight to the file
descriptor (pytest's capture of sys.stdout would not see it).
"""

import subprocess
import sys
import textwrap

import pytest

SOLVES = textwrap.dedent("""
    import numpy as np
    import preimage as pim
    from preimage.geometry.lp import LPModel

    pim.solve_lp([1.0], A_ub=[[-1.0]], b_ub=[1.0])
    for problem in (dict(c=[1.0], A_ub=[[1.0], [-1.0]], b_ub=[-1.0, -1.0]), dict(c=[-1.0, 0.0], A_ub=[[1.0, -1.0]], b_ub=[0.0])):
        try:
            pim.solve_lp(**problem)
        except (pim.Infeasible, pim.Unbounded):
            pass
    model = LPModel(2, A_ub=np.vstack([np.eye(2), -np.eye(2)]), b_ub=np.ones(4))
    model.maximize([1.0, 1.0])
    cube = pim.Box(-np.ones(3), np.ones(3)).to_polytope()
    cube.dim, cube.is_bounded(), cube.minimal(), cube.volume(), cube.sample(10)
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("code", ["import preimage", SOLVES], ids=["import", "solves"])
def test_library_is_silent(code):
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_cli_prints_only_its_own_results(benchmarks_dir):
    model = benchmarks_dir / "acasxu" / "ACASXU_run2a_1_1_batch_2000.onnx"
    code = f"import sys; from preimage import cli; sys.exit(cli.main(['info', {str(model)!r}]))"
    result = _run(SOLVES + "\n" + code)
    assert result.returncode == 0, result.stderr
    assert "HiGHS" not in result.stdout and "HiGHS" not in result.stderr
    assert result.stdout.startswith("ACASXU") and result.stderr == ""

"""read_vnnlib: every benchmark file means the set it asserts, checked against an independent evaluator."""

import re

import numpy as np
import pytest

import preimage as pim
from preimage.errors import EmptyDomainError, PreimageError, ShapeError
from preimage.network import IDENTITY, RELU, AffineMap, Layer, Network
from preimage.preimages.targets import AnyOf, InputPolytope, OutputPolytope, compile_target, satisfies
from preimage.preimages.vnnlib import VNNLibError, read_vnnlib

from conftest import BENCHMARKS

VNNLIB_FILES = sorted(BENCHMARKS.rglob("*.vnnlib")) if BENCHMARKS.is_dir() else []


# ---------------------------------------------------------------- an independent evaluator of VNN-LIB text

def s_expressions(text):
    tokens = re.sub(r";[^\n]*", " ", text).replace("(", " ( ").replace(")", " ) ").split()
    stack = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    return stack[0]


def evaluate(expr, X, Y):
    """The value of expr at every row of X (n, d), Y (n, m): numbers broadcast, booleans (n,)."""
    if isinstance(expr, str):
        if expr[0] in "XY" and expr[1] == "_":
            return (X if expr[0] == "X" else Y)[:, int(expr[2:])]
        return float(expr)
    op, *args = expr
    values = [evaluate(a, X, Y) for a in args]
    if op == "and":
        return np.logical_and.reduce(values)
    if op == "or":
        return np.logical_or.reduce(values)
    if op == "+":
        return sum(values)
    if op == "-":
        return -values[0] if len(values) == 1 else values[0] - sum(values[1:])
    if op == "*":
        return np.prod(np.broadcast_arrays(*values), axis=0)
    compare = {"<=": np.less_equal, ">=": np.greater_equal, "<": np.less, ">": np.greater, "=": np.equal}[op]
    return np.logical_and.reduce([compare(a, b) for a, b in zip(values[:-1], values[1:])])


def asserted(text, X, Y):
    result = np.ones(len(X), dtype=bool)
    for command in s_expressions(text):
        if command[0] == "assert":
            result &= np.broadcast_to(evaluate(command[1], X, Y), result.shape)
    return result


# ---------------------------------------------------------------- the (domain, target) side

def in_domain(domain, X):
    if domain is None:
        return np.ones(len(X), dtype=bool)
    boxes = domain if isinstance(domain, list) else [domain]
    return np.logical_or.reduce([box.contains(X) for box in boxes])


def hull(domain, d):
    if domain is None:
        return np.full(d, -3.0), np.full(d, 3.0)
    boxes = domain if isinstance(domain, list) else [domain]
    return np.min([b.lo for b in boxes], axis=0), np.max([b.hi for b in boxes], axis=0)


def network_over(rng, lo, hi, outputs, hidden=12, scale=6.0):
    """A ReLU net whose hidden units see the box [lo, hi] as [-1, 1]^d; outputs 0 at its centre, varying a lot."""
    centre, radius = (lo + hi) / 2, np.where(hi > lo, (hi - lo) / 2, 1.0)
    W = rng.standard_normal((hidden, lo.size)) / radius / np.sqrt(lo.size)
    first = Layer(AffineMap(W, -W @ centre + 0.3 * rng.standard_normal(hidden)), RELU, "fc0")
    V = scale * rng.standard_normal((outputs, hidden))
    last = Layer(AffineMap(V, -V @ first(centre[None, :])[0]), IDENTITY, "fc1")
    return Network([first, last])


def sample_around(rng, domain, d, n):
    """Points inside the domain (some on its faces), just outside one face, and in the enlarged hull."""
    lo, hi = hull(domain, d)
    boxes = [(lo, hi)] if domain is None else [(b.lo, b.hi) for b in (domain if isinstance(domain, list) else [domain])]
    parts = []
    for k in range(3):
        which = rng.integers(len(boxes), size=n)
        b_lo = np.array([boxes[i][0] for i in which])
        b_hi = np.array([boxes[i][1] for i in which])
        P = rng.uniform(b_lo, b_hi)
        snap = rng.random(P.shape) < 0.05
        P = np.where(snap, np.where(rng.random(P.shape) < 0.5, b_lo, b_hi), P)
        width = np.maximum(b_hi - b_lo, 0.01)
        if k == 1:
            j = rng.integers(d, size=n)
            rows = np.arange(n)
            side = rng.random(n) < 0.5
            P[rows, j] = np.where(side, b_lo[rows, j] - 0.1 * width[rows, j], b_hi[rows, j] + 0.1 * width[rows, j])
        if k == 2:
            P = rng.uniform(lo - 0.2 * np.maximum(hi - lo, 0.01), hi + 0.2 * np.maximum(hi - lo, 0.01), size=(n, d))
        parts.append(P)
    return np.vstack(parts)


def check_meaning(path, rng, n=400):
    prop = read_vnnlib(path)
    domain, target = prop
    lo, hi = hull(domain, prop.n_inputs)
    net = network_over(rng, lo, hi, prop.n_outputs)
    X = sample_around(rng, domain, prop.n_inputs, n)
    expected = asserted(path.read_text(), X, net.forward(X))
    got = in_domain(domain, X) & satisfies(compile_target(target, net), net, X)
    assert np.array_equal(got, expected), f"{path.name}: {np.count_nonzero(got != expected)} points disagree"
    return expected


@pytest.mark.skipif(not VNNLIB_FILES, reason=f"no .vnnlib benchmark files under {BENCHMARKS}")
@pytest.mark.parametrize("path", VNNLIB_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_benchmark_file_means_the_set_it_asserts(path, rng):
    expected = check_meaning(path, rng)
    assert expected.any() and not expected.all(), f"{path.name}: the samples do not reach both sides of the set"


@pytest.mark.skipif(not VNNLIB_FILES, reason=f"no .vnnlib benchmark files under {BENCHMARKS}")
def test_acas_xu_properties_have_their_shapes(benchmarks_dir):
    acas = benchmarks_dir / "acasxu"
    net = pim.load(acas / "ACASXU_run2a_1_1_batch_2000.onnx")
    for k in range(1, 11):
        domain, target = read_vnnlib(acas / f"prop_{k}.vnnlib", net=net)
        if k == 6:
            assert isinstance(domain, list) and len(domain) == 2 and all(b.dim == 5 for b in domain)
        else:
            assert isinstance(domain, pim.Box) and domain.dim == 5
        assert isinstance(target, AnyOf if k in (5, 6, 7, 8, 9, 10) else OutputPolytope)
        assert compile_target(target, net)
    domain, _ = read_vnnlib(acas / "prop_4.vnnlib")
    assert domain.lo[2] == domain.hi[2] == 0.0
    with pytest.raises(ShapeError, match="declares 5 inputs and 5 outputs"):
        read_vnnlib(acas / "prop_1.vnnlib", net=network_over(np.random.default_rng(0), np.zeros(4), np.ones(4), 5))


# ---------------------------------------------------------------- written files

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(2))


def write(tmp_path, body, name="prop.vnnlib"):
    path = tmp_path / name
    path.write_text(HEADER + body)
    return path


SYNTAX = {
    "mixed disjuncts": """
; later competitions: input and output constraints in one disjunct
(assert (or
    (and (>= X_0 -1) (<= X_0 1) (>= X_1 -1) (<= X_1 1) (>= X_2 0) (<= X_2 1) (>= Y_0 2))
    (and (>= X_0 2) (<= X_0 3) (>= X_1 -1e0) (<= X_1 0.5E+0) (>= X_2 0) (<= X_2 1) (<= Y_0 Y_1))
))
""",
    "rows across inputs, constants on the left, arithmetic": """
(assert (<= X_0 1)) (assert (>= X_0 -1))
(assert (>= 1.0 X_1)) (assert (<= -1 X_1))
(assert (and (<= X_2 2.5e-1)
             (>= X_2 -25e-2)))
(assert (<= X_0 X_1))
(assert (<= (+ X_0 (* 2 X_2)) (- 0.5)))
(assert (or (and (>= Y_0 Y_1) (<= (- Y_0 Y_1) 3)) (< Y_1 -2)))
""",
    "a union of boxes and an output conjunction": """
(assert (<= X_2 1)) (assert (>= X_2 -1))
(assert (or (and (<= X_0 0) (>= X_0 -1) (<= X_1 1) (>= X_1 0))
            (and (<= X_0 1) (>= X_0 0.5) (<= X_1 0) (>= X_1 -1))))
(assert (<= Y_0 1))
(assert (= X_1 X_1))
""",
    "an input disjunction that is not boxes": """
(assert (and (<= X_0 1) (>= X_0 -1) (<= X_1 1) (>= X_1 -1) (<= X_2 1) (>= X_2 -1)))
(assert (or (<= (+ X_0 X_1) 0) (and (>= X_2 0.5) (<= X_0 0.2))))
(assert (or (>= Y_0 0) (>= Y_1 0)))
""",
    "an unbounded input": """
(assert (<= X_0 1)) (assert (>= X_0 -1)) (assert (<= X_1 2))
(assert (<= X_2 X_0))
(assert (>= Y_1 Y_0 -1))
""",
}


@pytest.mark.parametrize("name", SYNTAX)
def test_written_files_mean_the_set_they_assert(tmp_path, rng, name):
    expected = check_meaning(write(tmp_path, SYNTAX[name]), rng, n=600)
    assert expected.any() and not expected.all()


def test_domains_of_written_files(tmp_path):
    domain, target = read_vnnlib(write(tmp_path, SYNTAX["mixed disjuncts"]))
    assert isinstance(domain, pim.Box) and domain.lo.tolist() == [-1, -1, 0] and domain.hi.tolist() == [3, 1, 1]
    assert isinstance(target, AnyOf) and all(isinstance(m, list) for m in target.targets)
    domain, _ = read_vnnlib(write(tmp_path, SYNTAX["a union of boxes and an output conjunction"]))
    assert [b.lo.tolist() for b in domain] == [[-1, 0, -1], [0.5, -1, -1]]
    domain, target = read_vnnlib(write(tmp_path, SYNTAX["an unbounded input"]))
    assert domain is None and isinstance(target, list) and isinstance(target[0], InputPolytope)
    prop = read_vnnlib(write(tmp_path, ""))
    assert prop.domain is None and prop.target == [] and (prop.n_inputs, prop.n_outputs) == (3, 2)


@pytest.mark.parametrize("body, line, token, what", [
    ("(assert (<= X_0 1)))\n", 6, ")", "unbalanced"),
    ("(assert (<= X_0\n 1)\n", 6, "assert", "never closed"),
    ("(assert (<= Z_0 1))\n", 6, "Z_0", "unknown variable"),
    ("(declare-const W_0 Real)\n", 6, "W_0", "unknown variable"),
    ("(assert (foo X_0 1))\n", 6, "foo", "unknown operator"),
    ("(assert (<= (sin X_0) 1))\n", 6, "sin", "unknown operator"),
    ("\n(assert (<= X_0 1.2.3))\n", 7, "1.2.3", "non-numeric constant"),
    ("(assert (<= X_0 nan))\n", 6, "nan", "unknown variable"),
    ("(assert (<= X_0 0x10))\n", 6, "0x10", "non-numeric constant"),
    ("(assert (<= X_7 1))\n", 6, "X_7", "undeclared variable"),
    ("(assert (<= X_0 Y_0))\n", 6, "X_0 Y_0", "mixes input and output"),
    ("(assert (<= (* X_0 X_1) 1))\n", 6, "*", "nonlinear"),
    ("(declare-const X_0 Real)\n", 6, "X_0", "declared twice"),
    ("(declare-const X_4 Real)\n", 6, "X_4", "X_3 is not declared"),
    ("(declare-const X_3 Int)\n", 6, "Int", "must be Real"),
    ("(push 1)\n", 6, "push", "unknown command"),
    ("(assert (<= X_0))\n", 6, "<=", "two terms"),
])
def test_malformed_files_name_the_line_and_the_token(tmp_path, body, line, token, what):
    path = write(tmp_path, body)
    with pytest.raises(VNNLibError, match=re.escape(what)) as caught:
        read_vnnlib(path)
    error = caught.value
    assert isinstance(error, PreimageError) and isinstance(error, ValueError)
    assert (error.line, error.token) == (line, token)
    assert str(path) in str(error) and f"line {line}" in str(error) and repr(token) in str(error)


def test_contradictory_input_bounds_are_an_empty_domain(tmp_path):
    with pytest.raises(EmptyDomainError, match="X_1"):
        read_vnnlib(write(tmp_path, "(assert (<= X_1 0)) (assert (>= X_1 1))"))
    body = "(assert (<= X_0 0)) (assert (or (and (>= X_0 1) (<= X_0 2)) (and (>= X_0 3) (<= X_0 4))))"
    with pytest.raises(EmptyDomainError):
        read_vnnlib(write(tmp_path, body))


def test_a_false_assertion_gives_an_empty_target(tmp_path, rng):
    domain, target = read_vnnlib(write(tmp_path, "(assert (<= X_0 1)) (assert (>= X_0 0)) (assert (<= 2 1))"))
    net = network_over(rng, np.zeros(3), np.ones(3), 2)
    assert all(c.trivially_empty for c in compile_target(target, net))


def test_gzipped_files_read_the_same(tmp_path):
    import gzip

    plain = write(tmp_path, SYNTAX["mixed disjuncts"])
    packed = tmp_path / "prop.vnnlib.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write(plain.read_text())
    (d1, t1), (d2, t2) = read_vnnlib(plain), read_vnnlib(packed)
    assert d1 == d2 and repr(t1) == repr(t2)

"""VNN-LIB properties as a (domain, target) pair.

A VNN-LIB file declares the inputs ``X_0 .. X_{d-1}`` and outputs ``Y_0 .. Y_{m-1}`` of a network and
asserts linear constraints on them, joined by ``and`` / ``or``; for VNN-COMP files the asserted set is the
unsafe set. ``read_vnnlib`` gives the same set as a domain (a ``Box``, a list of ``Box`` for a union, or
None when the inputs are not boxed) and a target (see ``targets.py``):

- bounds ``(<= X_i c)`` / ``(>= X_i c)`` asserted outright give the box; a disjunction of boxes gives a
  list of boxes;
- any other input constraint (two inputs in one row, a disjunction of non-boxes, input bounds inside a
  disjunct that also constrains outputs) becomes an ``InputPolytope`` of the target, and the domain is
  only the box the whole set is known to lie in;
- output constraints asserted outright give one ``OutputPolytope``; each disjunction an ``AnyOf``.

Terms are variables, decimal constants (scientific notation too) and the linear operators ``+``, ``-``
and ``*`` (by a constant); comparisons ``<=``, ``>=``, ``=``, and ``<``, ``>`` read as their closures (the
sets differ by a boundary of measure zero). ``;`` starts a comment. A row mixing inputs and outputs
has no target to hold it and is refused.
"""

from __future__ import annotations

import gzip
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmptyDomainError, PreimageError, ShapeError
from ..geometry import Box
from .targets import AnyOf, InputPolytope, OutputPolytope

__all__ = ["VNNLibError", "VNNLibProperty", "read_vnnlib"]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_VARIABLE = re.compile(r"([XY])_(0|[1-9]\d*)")
_COMPARISONS = ("<=", ">=", "<", ">", "=")
_IGNORED_COMMANDS = ("check-sat", "get-model", "exit", "set-logic", "set-info", "set-option")


class VNNLibError(PreimageError, ValueError):
    """A VNN-LIB file that cannot be read: names the file, the line and the offending token."""

    def __init__(self, path, line: int, token: str, what: str):
        self.path, self.line, self.token, self.what = str(path), int(line), token, what
        super().__init__(f"{path}, line {line}: {what} {token!r}")

    def __reduce__(self):
        return type(self), (self.path, self.line, self.token, self.what)


class VNNLibProperty(tuple):
    """``(domain, target)`` read from a VNN-LIB file; unpacks as a pair.

    domain : a ``Box``, a list of ``Box`` (their union) or None (no bounded box holds the inputs).
    target : a target for ``compile_target`` / ``preimage`` (a list means all of them).
    n_inputs, n_outputs : the numbers of ``X_i`` and ``Y_j`` the file declares. path : the file.
    """

    def __new__(cls, domain, target, n_inputs: int, n_outputs: int, path: str):
        self = super().__new__(cls, (domain, target))
        self.n_inputs, self.n_outputs, self.path = int(n_inputs), int(n_outputs), str(path)
        return self

    @property
    def domain(self):
        return self[0]

    @property
    def target(self):
        return self[1]

    def __repr__(self) -> str:
        return f"VNNLibProperty({self.path!r}: {self.n_inputs} inputs, {self.n_outputs} outputs)"


# --------------------------------------------------------------------------- s-expressions

@dataclass(frozen=True)
class _Token:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple
    line: int


def _parse(text: str, path) -> list:
    """The file's top-level s-expressions, each a ``_List`` of ``_Token`` and ``_List``."""
    stack: list[tuple[int, list]] = []
    top: list = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _TOKEN.finditer(line.split(";", 1)[0]):
            token = match.group()
            if token == "(":
                stack.append((number, []))
            elif token == ")":
                if not stack:
                    raise VNNLibError(path, number, token, "unbalanced parenthesis: nothing to close at")
                opened, items = stack.pop()
                node = _List(tuple(items), opened)
                (stack[-1][1] if stack else top).append(node)
            elif stack:
                stack[-1][1].append(_Token(token, number))
            else:
                raise VNNLibError(path, number, token, "expected '(' before")
    if stack:
        opened, items = stack[-1]
        first = items[0].text if items and isinstance(items[0], _Token) else "("
        raise VNNLibError(path, opened, first, "unbalanced parenthesis: '(' opened here is never closed, at")
    return top


# --------------------------------------------------------------------------- formulas

@dataclass(frozen=True)
class _Atom:
    """``sum coefs[v] * v <= rhs`` over variables ``("X", i)`` / ``("Y", j)``."""

    coefs: tuple
    rhs: float
    line: int

    def kind(self) -> str:
        kinds = {name for (name, _), _ in self.coefs}
        return "".join(sorted(kinds))


class _Reader:
    def __init__(self, path):
        self.path = path
        self.declared: dict[str, int] = {}
        self.indices = {"X": {}, "Y": {}}

    def error(self, node, what: str):
        if isinstance(node, _Token):
            raise VNNLibError(self.path, node.line, node.text, what)
        head = node.items[0].text if node.items and isinstance(node.items[0], _Token) else "("
        raise VNNLibError(self.path, node.line, head, what)

    def declare(self, node: _List) -> None:
        if len(node.items) != 3 or not all(isinstance(t, _Token) for t in node.items[1:]):
            self.error(node, "expected (declare-const NAME Real) at")
        name, sort = node.items[1], node.items[2]
        match = _VARIABLE.fullmatch(name.text)
        if match is None:
            self.error(name, "unknown variable (inputs are X_i, outputs Y_j):")
        if sort.text != "Real":
            self.error(sort, "variables must be Real, got sort")
        if name.text in self.declared:
            self.error(name, f"variable declared twice (first on line {self.declared[name.text]}):")
        self.declared[name.text] = name.line
        self.indices[match.group(1)][int(match.group(2))] = name.line

    def sizes(self) -> tuple[int, int]:
        sizes = []
        for kind in ("X", "Y"):
            indices = self.indices[kind]
            n = len(indices)
            missing = sorted(set(range(n)) - set(indices))
            if missing:
                beyond = max(indices)
                raise VNNLibError(self.path, indices[beyond], f"{kind}_{beyond}",
                                  f"{kind} variables must be {kind}_0 .. {kind}_{n - 1} ({kind}_{missing[0]} is not "
                                  f"declared), got")
            sizes.append(n)
        return sizes[0], sizes[1]

    # terms are (coefficients: dict, constant: float)
    def term(self, node):
        if isinstance(node, _Token):
            text = node.text
            if _NUMBER.fullmatch(text):
                return {}, float(text)
            match = _VARIABLE.fullmatch(text)
            if match is not None:
                if text not in self.declared:
                    self.error(node, "undeclared variable")
                return {(match.group(1), int(match.group(2))): 1.0}, 0.0
            if text[0].isalpha() or text[0] == "_":
                self.error(node, "unknown variable")
            self.error(node, "non-numeric constant")
        if not node.items or not isinstance(node.items[0], _Token):
            self.error(node, "expected an operator at")
        op, args = node.items[0], node.items[1:]
        if op.text not in ("+", "-", "*"):
            self.error(op, "unknown operator")
        if not args:
            self.error(op, "operator without arguments:")
        parts = [self.term(a) for a in args]
        if op.text == "+":
            return _sum(parts, [1.0] * len(parts))
        if op.text == "-":
            if len(parts) == 1:
                return _sum(parts, [-1.0])
            return _sum(parts, [1.0] + [-1.0] * (len(parts) - 1))
        if op.text == "*":
            variable = [p for p in parts if p[0]]
            if len(variable) > 1:
                self.error(op, "nonlinear product:")
            scale = float(np.prod([c for coefs, c in parts if not coefs]))
            if not variable:
                return {}, scale
            coefs, constant = variable[0]
            return {v: scale * a for v, a in coefs.items()}, scale * constant

    def formula(self, node):
        """``("atom", _Atom) | ("and", [...]) | ("or", [...]) | True | False``."""
        if isinstance(node, _Token) or not node.items or not isinstance(node.items[0], _Token):
            self.error(node, "expected a constraint (and, or, <=, >=, =, <, >) at")
        op, args = node.items[0], node.items[1:]
        if op.text in ("and", "or"):
            if not args:
                self.error(op, "empty")
            return (op.text, [self.formula(a) for a in args])
        if op.text not in _COMPARISONS:
            self.error(op, "unknown operator")
        if len(args) < 2:
            self.error(op, "comparison needs two terms:")
        terms = [self.term(a) for a in args]
        atoms = []
        for left, right in zip(terms[:-1], terms[1:]):
            if op.text in ("<=", "<"):
                atoms.append(self.atom(left, right, op.line))
            elif op.text in (">=", ">"):
                atoms.append(self.atom(right, left, op.line))
            else:
                atoms += [self.atom(left, right, op.line), self.atom(right, left, op.line)]
        if len(atoms) == 1:
            return atoms[0]
        return ("and", atoms)

    def atom(self, small, large, line: int):
        """``small <= large`` as an atom, or True/False when no variable is left."""
        coefs, constant = _sum([small, large], [1.0, -1.0])
        coefs = {v: a for v, a in coefs.items() if a != 0.0}
        if not coefs:
            return bool(constant <= 0.0)
        return ("atom", _Atom(tuple(sorted(coefs.items())), 0.0 - constant, line))


def _sum(parts, signs):
    coefs: dict = {}
    constant = 0.0
    for (part, c), sign in zip(parts, signs):
        constant += sign * c
        for v, a in part.items():
            coefs[v] = coefs.get(v, 0.0) + sign * a
    return coefs, constant


def _conjuncts(formula) -> list:
    if isinstance(formula, tuple) and formula[0] == "and":
        return [c for child in formula[1] for c in _conjuncts(child)]
    return [formula]


def _dnf(formula) -> list[list[_Atom]]:
    """Disjuncts, each a list of atoms; ``[]`` is False, ``[[]]`` is True."""
    if formula is True:
        return [[]]
    if formula is False:
        return []
    kind, body = formula
    if kind == "atom":
        return [[body]]
    if kind == "or":
        return [d for child in body for d in _dnf(child)]
    disjuncts: list[list[_Atom]] = [[]]
    for child in body:
        disjuncts = [a + b for a, b in itertools.product(disjuncts, _dnf(child))]
    return disjuncts


# --------------------------------------------------------------------------- assembly

class _Bounds:
    """Lower and upper bounds of the inputs and the rows that are not bounds."""

    def __init__(self, d: int):
        self.lo = np.full(d, -np.inf)
        self.hi = np.full(d, np.inf)
        self.rows: list[tuple[np.ndarray, float]] = []

    def add(self, atom: _Atom) -> None:
        if len(atom.coefs) == 1:
            ((_, i), a), = atom.coefs
            if a > 0:
                self.hi[i] = min(self.hi[i], atom.rhs / a)
            else:
                self.lo[i] = max(self.lo[i], atom.rhs / a)
        else:
            self.rows.append((_row(atom, self.lo.size), atom.rhs))

    @property
    def is_box(self) -> bool:
        return not self.rows and bool(np.all(np.isfinite(self.lo)) and np.all(np.isfinite(self.hi)))

    def polytope(self) -> InputPolytope:
        """Every constraint (bounds and rows) as rows ``A x <= b``; infinite bounds left out."""
        d = self.lo.size
        eye = np.eye(d)
        A = [eye[np.isfinite(self.hi)], -eye[np.isfinite(self.lo)]] + [r[None, :] for r, _ in self.rows]
        b = [self.hi[np.isfinite(self.hi)], -self.lo[np.isfinite(self.lo)], np.array([c for _, c in self.rows])]
        return InputPolytope(np.vstack(A), np.concatenate(b))


def _row(atom: _Atom, width: int) -> np.ndarray:
    row = np.zeros(width)
    for (_, i), a in atom.coefs:
        row[i] += a
    return row


def _output_polytope(atoms: list[_Atom], m: int) -> OutputPolytope:
    return OutputPolytope(np.array([_row(a, m) for a in atoms]).reshape(-1, m), [a.rhs for a in atoms])


def _bounds_of(atoms: list[_Atom], d: int) -> _Bounds:
    bounds = _Bounds(d)
    for atom in atoms:
        bounds.add(atom)
    return bounds


def _intersect(boxes: list[tuple[np.ndarray, np.ndarray]], lo, hi) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each box intersected with [lo, hi]; the empty ones left out."""
    out = []
    for box_lo, box_hi in boxes:
        new_lo, new_hi = np.maximum(box_lo, lo), np.minimum(box_hi, hi)
        if np.all(new_lo <= new_hi):
            out.append((new_lo, new_hi))
    return out


def _one(factors: list):
    return factors[0] if len(factors) == 1 else factors


def _assemble(reader: _Reader, formulas: list, n_x: int, n_y: int):
    path = reader.path
    plain = _Bounds(n_x)
    output_atoms: list[_Atom] = []
    box_unions: list[list[tuple[np.ndarray, np.ndarray]]] = []
    input_choices: list[list[_Bounds]] = []
    output_choices: list[list[list[_Atom]]] = []
    mixed_choices: list[list[tuple[_Bounds, list[_Atom]]]] = []
    contradiction = None

    def split(atoms):
        xs, ys = [], []
        for atom in atoms:
            kind = atom.kind()
            if kind == "XY":
                raise VNNLibError(path, atom.line, " ".join(f"{k}_{i}" for (k, i), _ in atom.coefs),
                                  "a row mixes input and output variables:")
            (xs if kind == "X" else ys).append(atom)
        return xs, ys

    for formula in formulas:
        for conjunct in _conjuncts(formula):
            disjuncts = _dnf(conjunct)
            if not disjuncts:
                contradiction = contradiction or "an assertion is false for every input"
                continue
            if any(not d for d in disjuncts):
                continue
            if len(disjuncts) == 1:
                xs, ys = split(disjuncts[0])
                for atom in xs:
                    plain.add(atom)
                output_atoms += ys
                continue
            parts = [split(d) for d in disjuncts]
            if all(not ys for _, ys in parts):
                choices = [_bounds_of(xs, n_x) for xs, _ in parts]
                if all(not c.rows for c in choices):
                    box_unions.append([(c.lo, c.hi) for c in choices])
                else:
                    input_choices.append(choices)
            elif all(not xs for xs, _ in parts):
                output_choices.append([ys for _, ys in parts])
            else:
                mixed_choices.append([(_bounds_of(xs, n_x), ys) for xs, ys in parts])

    # every input constraint inside a union still bounds the set by the union's hull
    lo, hi = plain.lo.copy(), plain.hi.copy()
    for choices in input_choices + [[b for b, _ in m] for m in mixed_choices]:
        lo = np.maximum(lo, np.min([c.lo for c in choices], axis=0))
        hi = np.minimum(hi, np.max([c.hi for c in choices], axis=0))
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        i = int(crossed[0])
        raise EmptyDomainError(f"{path}: the input constraints are contradictory: X_{i} >= {lo[i]!r} and "
                               f"X_{i} <= {hi[i]!r}")

    boxes = [(lo, hi)]
    for union in box_unions:
        boxes = [part for box in boxes for part in _intersect(union, *box)]
    if not boxes:
        raise EmptyDomainError(f"{path}: the input constraints are contradictory: no box of the disjunctions meets "
                               f"the other input bounds")

    factors: list = []
    if all(np.all(np.isfinite(b_lo)) and np.all(np.isfinite(b_hi)) for b_lo, b_hi in boxes):
        domain = Box(*boxes[0]) if len(boxes) == 1 else [Box(b_lo, b_hi) for b_lo, b_hi in boxes]
    else:
        domain = None
        regions = []
        for b_lo, b_hi in boxes:
            region = _Bounds(n_x)
            region.lo, region.hi = b_lo, b_hi
            regions.append(region.polytope())
        if any(r.A.shape[0] for r in regions):
            factors.append(AnyOf(regions) if len(regions) > 1 else regions[0])
    if plain.rows:
        rows_only = _Bounds(n_x)
        rows_only.rows = plain.rows
        factors.append(rows_only.polytope())
    for choices in input_choices:
        factors.append(AnyOf([c.polytope() for c in choices]))
    if output_atoms:
        factors.append(_output_polytope(output_atoms, n_y))
    for choices in output_choices:
        factors.append(AnyOf([_output_polytope(ys, n_y) for ys in choices]))
    for choices in mixed_choices:
        members = []
        for bounds, ys in choices:
            parts = []
            if bounds.rows or np.any(np.isfinite(bounds.lo)) or np.any(np.isfinite(bounds.hi)):
                parts.append(bounds.polytope())
            if ys:
                parts.append(_output_polytope(ys, n_y))
            members.append(_one(parts))
        factors.append(AnyOf(members))
    if contradiction is not None:
        factors.append(InputPolytope(np.zeros((1, n_x)), [-1.0]))
    return domain, _one(factors)


def read_vnnlib(path, net=None) -> VNNLibProperty:
    """The set a VNN-LIB file asserts, as ``(domain, target)`` (a ``VNNLibProperty``).

    path : a ``.vnnlib`` file (or ``.vnnlib.gz``). net : optional network whose ``input_dim`` and
    ``output_dim`` must match the numbers of declared ``X_i`` and ``Y_j`` (ShapeError otherwise).
    Raises VNNLibError (file, line, token) on a malformed file and EmptyDomainError when the input
    constraints contradict each other.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    reader = _Reader(path)
    formulas = []
    for command in _parse(text, path):
        head = command.items[0] if command.items else None
        if not isinstance(head, _Token):
            reader.error(command, "expected a command (declare-const, assert) at")
        if head.text == "declare-const":
            reader.declare(command)
        elif head.text == "assert":
            if len(command.items) != 2:
                reader.error(head, "assert takes one constraint:")
            formulas.append(reader.formula(command.items[1]))
        elif head.text not in _IGNORED_COMMANDS:
            reader.error(head, "unknown command")
    n_x, n_y = reader.sizes()
    if n_x == 0:
        raise VNNLibError(path, 1, "X_0", "no input variable declared: expected")
    if net is not None and (net.input_dim != n_x or net.output_dim != n_y):
        raise ShapeError(f"{path} declares {n_x} inputs and {n_y} outputs; the network {net.name!r} has "
                         f"{net.input_dim} inputs and {net.output_dim} outputs")
    domain, target = _assemble(reader, formulas, n_x, n_y)
    return VNNLibProperty(domain, target, n_x, n_y, path)

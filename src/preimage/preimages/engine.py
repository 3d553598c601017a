"""Exact preimages of a target through the whole network: branch and prune over subdomains.

A *subdomain* is a polytope P of the input space (the domain's rows, the rows of the splits that made it and
the target's rows on the layers already passed) together with the activation pattern of every layer before
its *stage* ``l``. On P the network up to layer l is one affine map, so layer l's pre-activation is
``z = M x + c`` exactly. Each round takes a stack of subdomains and, with one batched bound computation
(``bounds.stack_bounds``: intervals, then linear relaxations carried back through the transposed maps):

- drops a subdomain where some target row is proven violated on its bounding box;
- keeps a subdomain as one piece where every target row is proven met (whatever patterns it holds);
- fixes the units of layer l whose sign the bounds decide; when every unit is fixed, the pattern grows by
  one layer, the next layer's map is composed, and the target's rows on it become rows of P;
- otherwise splits: the box in two along the input coordinate that the undecided rows are most sensitive to
  (low input dimensions), or P by one unstable unit of layer l (``z <= 0`` / ``z >= 0``), chosen where the
  relaxation is loosest. An LP over P first asks whether the unit is unstable on P itself.

When the last layer is passed, P is a piece: the set of inputs of the subdomain that meet the target. The
children of a split share only their boundary, so pieces never overlap in volume. Without a bounded domain
(``domain=None``) nothing is bounded by boxes: every decision is taken by LPs over P, layer by layer.

The parts: ``problem`` (stages, the target's rows per stage, the domain), ``subdomain`` (a node of the search),
``search`` (one round over a stack of nodes), ``budget`` (budgets, the loop, checkpoints) and this module,
the entry point that turns the raw pieces into a checked ``PreimageSet``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .. import settings as _settings
from ..errors import PreimageError
from ..geometry import Polytope
from ..network import AffineMap, Network
from .budget import Budget, _run, _State
from .pieces import _disjoint_pieces, _fingerprint, _from_cell, _RawPiece
from .problem import _domain_parts
from .search import _Search
from .subdomain import _raw_polytope
from .subspace import flat_coordinates
from .targets import compile_target, satisfies

__all__ = ["Budget", "preimage"]


def preimage(net, target, domain=None, *, budget: Budget | None = None, one_pattern_per_piece: bool = False,
             progress: bool | None = None, checkpoint=None, checkpoint_every: float = 60.0, resume: bool = False,
             input_split: bool | None = None, batch: int = 256):
    """The exact set of inputs in ``domain`` whose activity meets ``target``, as a union of convex pieces.

    Parameters
    ----------
    net : a ``Network`` (or anything ``pim.load`` accepts).
    target : a target of ``preimages.targets`` (``Activity``, ``Pattern``, ``ArgMax``, ``OutputPolytope``,
        ``NeuronRange``, ``InputPolytope``, ``AnyOf``) or a list of them (all of them).
    domain : a ``Box``, a ``Polytope``, a sequence of them (their union; parts meet only on boundaries), or
        None for the whole input space (pieces may then be unbounded).
    budget : ``Budget(seconds=, pieces=, subdomains=)``; when it stops the search the result has
        ``complete=False`` and its ``inner`` / ``outer`` bound the true preimage.
    one_pattern_per_piece : split until every piece has one activation pattern (linear regions).
    progress : show a progress bar (True), never (False), or only when stderr is a terminal (None).
    checkpoint : a file the search state is written to (atomically) every ``checkpoint_every`` seconds and
        when it stops; ``resume=True`` continues from it, giving the same pieces as an uninterrupted run.
        The file is a pickle written by this function: load only checkpoints you wrote.
    input_split : bisect the input box while many units are unstable (default: bounded domains of inputs
        of dimension 9 to 12 without equality targets; lower dimensions are searched with the vertices
        of every subdomain, where ReLU splits alone are faster).
    batch : subdomains bounded together in one round.

    Returns
    -------
    PreimageSet. Ctrl-C during the search returns the certified partial result (``complete=False``).
    """
    from .preimage_set import Piece, PreimageSet
    from ..network.load import load

    if not isinstance(net, Network):
        net = load(net)
    if budget is not None and not isinstance(budget, Budget):
        raise TypeError(f"budget must be a pim.Budget, got {type(budget).__name__}")
    budget = budget or Budget()
    conjunctions = compile_target(target, net)
    parts = _domain_parts(domain, net.input_dim)
    flat = flat_coordinates(parts, net.input_dim)
    search_net, search_conj, search_parts = net, conjunctions, parts
    if flat is not None:
        search_net = flat.network(net)
        search_conj = [flat.conjunction(conj) for conj in conjunctions]
        search_parts = [flat.part(part) for part in parts]
    search = _Search(search_net, search_conj, search_parts, one_pattern=one_pattern_per_piece,
                     input_split=input_split, batch=int(batch))
    fingerprint = _fingerprint(search_net, search_conj, search_parts, one_pattern_per_piece)
    state = None
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint file to resume from")
        path = Path(checkpoint)
        if path.exists():
            with open(path, "rb") as handle:
                state = pickle.load(handle)
            if not isinstance(state, _State) or state.fingerprint != fingerprint:
                raise PreimageError(f"checkpoint {path} was written for another network, target or domain "
                                    "(or by another version of preimage)")
    if state is None:
        roots = search.roots(search_parts)
        state = _State(fingerprint, [], [], roots=max(1, len(roots)))
        state.push(roots)
    complete = _run(search, state, budget, progress, checkpoint, checkpoint_every)

    pieces = []
    unchecked = 0
    kept: list[tuple[int, Polytope | None, _RawPiece]] = []
    for raw in state.pieces:
        if raw.cell is not None and len(search_conj) == 1:
            kept.append((raw.conj, None, raw))
            continue
        polytope = _raw_polytope(raw)
        if raw.cell is None and polytope.is_empty():
            continue
        kept.append((raw.conj, polytope, raw))
    if len(search_conj) > 1:
        kept = _disjoint_pieces(kept, search_net.input_dim)
    found = []
    for conj, polytope, raw in kept:
        minimal, point = _from_cell(raw.cell, search_net.input_dim)
        if minimal is None:
            minimal = (polytope if polytope is not None else _raw_polytope(raw)).minimal()
            point = minimal.relative_interior_point()
        if flat is not None:
            minimal, point = flat.polytope(minimal), flat.point(point)
        found.append((conj, minimal, point, raw))
    checked = np.ones(len(found), dtype=bool)
    for j, conj in enumerate(conjunctions):
        index = [i for i, item in enumerate(found) if item[0] == j]
        if index:
            X = np.stack([found[i][2] for i in index])
            checked[index] = satisfies(conj, net, X, tol=max(1e-6, _settings.current().feasibility_tol))
    for (conj, minimal, point, raw), ok in zip(found, checked):
        unchecked += 0 if ok else 1
        pattern = None if raw.pattern is None else np.concatenate(raw.pattern) if raw.pattern else np.zeros(0, bool)
        affine = None if raw.affine is None else AffineMap(raw.affine[0], raw.affine[1])
        if flat is not None and affine is not None:
            affine = flat.affine(net, pattern)
        pieces.append(Piece(minimal, point, bool(ok), pattern, affine, conj))
    undecided = [] if complete else [_undecided_polytope(n, search_net.input_dim) for n in state.nodes()]
    if flat is not None:
        undecided = [flat.polytope(P) for P in undecided]
    stats = {"seconds": state.seconds, "subdomains": state.processed, "lps": state.lps + search.lps,
             "dropped": state.dropped, "witnesses_off_target": unchecked,
             "first_piece_seconds": state.first_piece}
    return PreimageSet(pieces, net=net, target=target, domain=domain, complete=complete, undecided=undecided,
                       stats=stats)


def _undecided_polytope(node, d: int) -> Polytope:
    """An open subdomain as a polytope: read off its cell where it holds one (minimal, no LPs), else its rows."""
    polytope, _ = _from_cell(node.cell, d)
    return polytope if polytope is not None else node.polytope()


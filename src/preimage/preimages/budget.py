"""Budgets of a search, the loop that runs rounds until the budget or the queue is spent, and checkpoints.

The loop's whole state (queue, pieces, counters) is one picklable ``_State``, written atomically to the
checkpoint file every ``checkpoint_every`` seconds and when the loop stops; a resumed search continues from it
and gives the same pieces as an uninterrupted run.
"""

from __future__ import annotations

import heapq
import os
import pickle
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .._io import write_atomic
from ..geometry.cells import Cell

__all__ = ["Budget"]


@dataclass(frozen=True)
class Budget:
    """Limits of one search; None means no limit.

    seconds : wall time of the search. pieces : pieces found. subdomains : subdomains processed.
    """

    seconds: float | None = None
    pieces: int | None = None
    subdomains: int | None = None

    def __post_init__(self):
        for name in ("seconds", "pieces", "subdomains"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"Budget {name} must be a nonnegative number or None, got {value!r}")



# Open subdomains held in the largest-first heap, in bytes; beyond it new ones go to a depth-first stack.
# None: a third of the machine's memory (at least 1 GiB).
_QUEUE_BYTES = None


# Past this share of the cap, waiting subdomains keep only the facets of their cells (``_Node.shed``).
_SHED_SHARE = 0.5


def _queue_bytes() -> int:
    if _QUEUE_BYTES is not None:
        return _QUEUE_BYTES
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 6 * 2 ** 30
    return max(2 ** 30, memory // 3)


@dataclass
class _State:
    """Everything a resumed search needs.

    ``queue`` is a heap of ``(-priority, order, node)``: each round takes the largest subdomains first (see
    ``_Node.priority``), so that a budget spent early leaves the most volume decided; ``order`` (the push count)
    breaks ties, so a run and its resumption take the same rounds. Largest-first keeps a wide frontier open;
    once the open subdomains hold ``_SHED_SHARE`` of ``_queue_bytes()`` (a third of the machine's memory),
    new ones enter the heap with their cells shed to facets (``_Node.shed``: a tenth of the bytes, rebuilt
    when taken); past the whole of it, or for nodes that cannot shed, they go to ``stack`` instead, which is
    searched depth-first (and first) until it is spent, so that memory stays bounded.
    """

    fingerprint: str
    queue: list
    pieces: list
    stack: list = field(default_factory=list)
    held: int = 0                 # bytes of the open subdomains
    pushed: int = 0
    processed: int = 0
    lps: int = 0
    seconds: float = 0.0
    decided: float = 0.0
    dropped: int = 0
    roots: int = 1
    first_piece: float | None = None

    def push(self, nodes) -> None:
        cap = _queue_bytes()
        for node in nodes:
            entry = (-node.priority, self.pushed, node)
            shed = self.held >= _SHED_SHARE * cap
            if shed and not self.stack:
                node.shed()
            if self.stack or self.held >= cap or (shed and isinstance(node.cell, Cell)):
                self.stack.append(entry)
            else:
                heapq.heappush(self.queue, entry)
            self.held += node.nbytes
            self.pushed += 1

    def pop(self, count: int) -> list:
        """The entries of ``count`` open subdomains, taken off the stack (the latest first) while it holds any,
        else off the heap (the largest first)."""
        if self.stack:
            entries = self.stack[-count:][::-1]
            del self.stack[-count:]
        else:
            entries = [heapq.heappop(self.queue) for _ in range(min(count, len(self.queue)))]
        self.held -= sum(entry[2].nbytes for entry in entries)
        return entries

    def put_back(self, entries) -> None:
        for entry in entries:
            heapq.heappush(self.queue, entry)
            self.held += entry[2].nbytes

    def nodes(self) -> list:
        """The open subdomains."""
        return [entry[2] for entry in self.queue + self.stack]

    def __len__(self) -> int:
        return len(self.queue) + len(self.stack)



def _run(search, state: _State, budget: Budget, progress, checkpoint, checkpoint_every) -> bool:
    """Run the search on ``state`` until done or out of budget; True when complete."""
    from tqdm.auto import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    bar = tqdm(total=1.0, disable=not show, unit="", bar_format="{l_bar}{bar}| {postfix}", leave=False)
    start = time.perf_counter() - state.seconds
    last_save = time.perf_counter()
    complete = True
    try:
        while len(state):
            elapsed = time.perf_counter() - start
            if ((budget.seconds is not None and elapsed >= budget.seconds)
                    or (budget.pieces is not None and len(state.pieces) >= budget.pieces)
                    or (budget.subdomains is not None and state.processed >= budget.subdomains)):
                complete = False
                break
            take = search.batch
            if budget.subdomains is not None:
                take = max(1, min(take, int(budget.subdomains) - state.processed))
            entries = state.pop(take)
            nodes = [entry[2] for entry in entries]
            try:
                children, pieces, decided, dropped = search.process(nodes)
            except KeyboardInterrupt:
                state.put_back(entries)
                complete = False
                break
            state.push(children)
            state.pieces.extend(pieces)
            if pieces and state.first_piece is None:
                state.first_piece = time.perf_counter() - start
            state.processed += len(nodes)
            state.decided += decided
            state.dropped += dropped
            state.seconds = time.perf_counter() - start
            bar.n = min(1.0, state.decided / state.roots)
            bar.set_postfix_str(f"{len(state.pieces)} pieces, {len(state)} open, {state.seconds:.1f} s")
            if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every:
                _save_state(state, search, checkpoint)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        complete = False
    finally:
        bar.close()
    state.seconds = time.perf_counter() - start
    if checkpoint is not None:
        _save_state(state, search, checkpoint)
    return complete and not len(state)


def _save_state(state: _State, search, path) -> None:
    lps = state.lps
    state.lps = lps + search.lps
    search.lps = 0
    write_atomic(path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

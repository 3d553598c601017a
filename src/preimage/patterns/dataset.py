"""Patterns of a whole dataset, streamed in batches, kept in memory or written to disk.

Data: an array or memory map (n, ...), a torch tensor, a torch ``DataLoader`` or any iterable of batches
(a batch may be an ``(inputs, targets)`` pair), or the string ``"digits"`` (scikit-learn's 8x8 digits,
pixels scaled to [0, 1], no download). Model: a ``Network`` (the exact float64 IR) or a torch
``nn.Module`` (run as is; patterns read with forward hooks, see ``hooks``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from .. import settings as _settings
from ..errors import ModelError, ShapeError
from .hooks import hook_preactivations
from .packed import Patterns, pack_bits

__all__ = ["digits", "iter_batches", "dataset_patterns", "save_patterns", "load_patterns"]

_DIGITS = 1797


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: X (1797, 64) float64 in [0, 1], y (1797,) int64."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64) / 16.0, data.target.astype(np.int64)


def _is_array(data) -> bool:
    return hasattr(data, "shape") and hasattr(data, "__getitem__") and len(getattr(data, "shape", ())) >= 1


def iter_batches(data, batch_size: int | None = None) -> Iterator:
    """Batches of ``data`` (see the module docstring): arrays are sliced ``batch_size`` rows at a time."""
    if isinstance(data, str):
        if data != "digits":
            raise ShapeError(f"unknown embedded data {data!r}: the embedded set is 'digits'")
        data = digits()[0]
    if _is_array(data):
        step = batch_size or _settings.current().chunk_size
        n = data.shape[0]
        return (data[start:start + step] for start in range(0, n, step))
    if hasattr(data, "__iter__"):
        return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in data)
    raise ShapeError(f"cannot read batches from a {type(data).__name__}: give an array, a tensor, a DataLoader "
                     "or 'digits'")


def _n_batches(data, batch_size: int | None) -> int | None:
    step = batch_size or _settings.current().chunk_size
    if isinstance(data, str):
        return -(-_DIGITS // step)
    if _is_array(data):
        return -(-data.shape[0] // step)
    return len(data) if hasattr(data, "__len__") else None


def _layer_patterns(model, batch, layers) -> list[tuple[np.ndarray, int, int]]:
    """(words, units, layer label) per chosen layer of one batch."""
    from ..network.network import Network

    if isinstance(model, Network):
        chosen = model.hidden if layers is None else tuple(int(i) for i in layers)
        bad = [i for i in chosen if i not in model.hidden]
        if bad:
            raise ShapeError(f"layer {bad[0]} has no kinked activation; layers with patterns: {model.hidden}")
        pre = model.preactivations(batch)
        return [(pack_bits(pre[i] > 0), pre[i].shape[1], i) for i in chosen]
    if hasattr(model, "named_modules") and callable(model):
        values = hook_preactivations(model, batch, layers)
        return [(pack_bits(v > 0), v.shape[1], i) for i, v in enumerate(values)]
    raise ModelError(f"patterns need a preimage Network or a torch nn.Module, got {type(model).__name__}")


def dataset_patterns(model, data, *, layers: Sequence | None = None, batch_size: int | None = None,
                     out: str | os.PathLike | None = None, progress: bool = False) -> Patterns:
    """Bit-packed patterns of every input of ``data``.

    Parameters
    ----------
    model : a ``Network`` (``layers``: indices into ``net.layers``, default ``net.hidden``) or a torch
        module (``layers``: submodule names, default every activation module; see ``hooks``).
    data : see the module docstring.
    out : a folder: the words of each layer are written there batch by batch (``layer_<i>.npy``, memory
        maps) and the result reads them from disk; the folder appears complete or not at all.
    progress : a progress bar over the batches (stderr).

    Returns a ``Patterns`` with n rows; for a torch module its ``layers`` are 0, 1, ... in the order of
    the chosen submodules.
    """
    batches = iter_batches(data, batch_size)
    if progress:
        batches = tqdm(batches, total=_n_batches(data, batch_size), desc="patterns", unit="batch")
    if out is None:
        parts = []
        for batch in batches:
            layer_parts = _layer_patterns(model, batch, layers)
            parts.append(Patterns(*(list(column) for column in zip(*layer_parts))))
        if not parts:
            raise ShapeError("the data hold no batch")
        return Patterns.concatenate(parts)
    return _stream_to_disk(model, batches, layers, Path(out))


def _stream_to_disk(model, batches, layers, out: Path) -> Patterns:
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    files: list = []
    try:
        units: list[int] = []
        labels: list[int] = []
        for batch in batches:
            layer_parts = _layer_patterns(model, batch, layers)
            if not files:
                units = [u for _, u, _ in layer_parts]
                labels = [i for _, _, i in layer_parts]
                files = [open(work / f"layer_{n}.words", "wb") for n in range(len(layer_parts))]
            for handle, (words, _, _) in zip(files, layer_parts):
                handle.write(np.ascontiguousarray(words, dtype="<u8").tobytes())
        if not files:
            raise ShapeError("the data hold no batch")
        for handle in files:
            handle.close()
        for n, u in enumerate(units):
            raw = np.fromfile(work / f"layer_{n}.words", dtype="<u8").reshape(-1, -(-u // 64))
            target = np.lib.format.open_memmap(work / f"layer_{n}.npy", mode="w+", dtype="<u8", shape=raw.shape)
            target[:] = raw
            target.flush()
            del target, raw
            (work / f"layer_{n}.words").unlink()
        np.save(work / "meta.npy", np.array([units, labels], dtype=np.int64))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        for handle in files:
            handle.close()
        shutil.rmtree(work, ignore_errors=True)
        raise
    return load_patterns(out)


def save_patterns(patterns: Patterns, out: str | os.PathLike) -> Path:
    """Write ``patterns`` to the folder ``out`` (as ``dataset_patterns(..., out=)`` does), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for n, words in enumerate(patterns.words):
            np.save(work / f"layer_{n}.npy", words)
        np.save(work / "meta.npy", np.array([patterns.units, patterns.layers], dtype=np.int64).reshape(2, -1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def load_patterns(folder: str | os.PathLike, *, mmap: bool = True) -> Patterns:
    """Patterns written by ``save_patterns`` / ``dataset_patterns(out=)``; memory-mapped by default."""
    folder = Path(folder)
    meta_path = folder / "meta.npy"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} holds no saved patterns (no meta.npy)")
    units, labels = np.load(meta_path, allow_pickle=False)
    words = [np.load(folder / f"layer_{n}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
             for n in range(len(units))]
    return Patterns(words, units.tolist(), labels.tolist())

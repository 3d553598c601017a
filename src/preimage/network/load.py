"""``load``: one entry point that turns a model object or a model file into a ``Network``.

Files are read as data: ONNX is parsed, NNet is text, and a ``.pt``/``.pth`` file is opened with
``torch.load(..., weights_only=True)``, which refuses pickled code. A weights file holds tensors only, so
its architecture comes from the caller as an ``nn.Module`` instance.
"""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import ModelError, ShapeError
from .network import Network
from .torch_import import from_torch, inference_copy

__all__ = ["load", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".onnx", ".nnet", ".pt", ".pth")

#: keys under which training checkpoints commonly nest the state dict
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict")


def load(model_or_path, *, input_shape=None, architecture: nn.Module | None = None, check: bool = True) -> Network:
    """The ``Network`` of a model object or file.

    Parameters
    ----------
    model_or_path : a ``Network`` (returned as is); a torch ``nn.Module`` (``from_torch``); an
        ``onnx.ModelProto``; or a path (str or PathLike) to a ``.onnx`` file, a ``.nnet`` file, or a
        ``.pt``/``.pth`` file holding a state dict (possibly nested under ``"state_dict"`` or
        ``"model_state_dict"``).
    input_shape : the shape of one sample without the batch axis, for torch models (modules and weights
        files; see ``from_torch``). ONNX and NNet files declare their own: a different one is a ShapeError.
    architecture : for a weights file, an ``nn.Module`` instance with the model's layers; the weights are
        loaded (strictly: every key must match) into a copy of it in eval mode; the instance is left unchanged.
    check : for torch models, compare the import with the module's forward pass (``from_torch``).

    Raises
    ------
    FileNotFoundError : the path does not exist.
    ModelError : an unknown suffix or object type; a weights file without ``architecture``, holding
        something other than a state dict (a pickled module is refused unread), or not matching it.
    """
    if isinstance(model_or_path, Network):
        return model_or_path
    if isinstance(model_or_path, nn.Module):
        _refuse_architecture(architecture, "an nn.Module, which is its own architecture")
        return from_torch(model_or_path, input_shape, check=check)
    if _is_onnx_model(model_or_path):
        from .onnx_import import from_onnx

        _refuse_architecture(architecture, "an ONNX model")
        return _with_declared_shape(from_onnx(model_or_path), input_shape, "the ONNX model")
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise ModelError(
            f"cannot load a {type(model_or_path).__name__}: pass a Network, a torch nn.Module, an onnx.ModelProto "
            f"or the path of a {', '.join(SUPPORTED_SUFFIXES)} file"
        )
    path = Path(model_or_path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no model file at this path", str(path))
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .onnx_import import from_onnx

        _refuse_architecture(architecture, "an ONNX file")
        return _with_declared_shape(from_onnx(path), input_shape, str(path))
    if suffix == ".nnet":
        from .nnet import read_nnet

        _refuse_architecture(architecture, "an NNet file")
        return _with_declared_shape(read_nnet(path), input_shape, str(path))
    if suffix in (".pt", ".pth"):
        return _load_weights(path, architecture, input_shape, check)
    raise ModelError(f"{path}: unknown model file suffix {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")


def _is_onnx_model(obj) -> bool:
    kind = type(obj)
    return kind.__name__ == "ModelProto" and kind.__module__.split(".")[0] == "onnx"


def _refuse_architecture(architecture, what: str) -> None:
    if architecture is not None:
        raise ModelError(f"architecture= is only used with .pt/.pth weights files, not with {what}")


def _with_declared_shape(net: Network, input_shape, source: str) -> Network:
    if input_shape is not None and tuple(input_shape) != net.input_shape:
        raise ShapeError(f"{source} declares the input shape {net.input_shape}, not {tuple(input_shape)}")
    return net


def _read_state(path: Path):
    """``torch.load(path, weights_only=True)``; every failure to read the file is a ModelError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise ModelError(
                f"{path} holds more than tensors (for instance a whole pickled module), and unpickling it could "
                "run code, so it is not loaded. Save model.state_dict() instead and load it with architecture=. "
                f"torch said: {_unsupported_global(exc)}"
            ) from exc
        raise ModelError(f"{path} is not a readable torch weights file (damaged or truncated?): "
                         f"{str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # a damaged file fails inside zipfile, the unpickler or storage code in any way
        detail = str(exc).splitlines()[0] if str(exc) else "the file ends unexpectedly"
        raise ModelError(
            f"{path} is not a readable torch weights file (damaged or truncated?): {type(exc).__name__}: {detail}"
        ) from exc


def _unsupported_global(exc: Exception) -> str:
    """The line of torch's weights-only refusal that names the global it would have to import."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if "Unsupported global" in line), lines[0] if lines else "")


def _load_weights(path: Path, architecture, input_shape, check: bool) -> Network:
    if architecture is None:
        raise ModelError(
            f"{path} is a weights file: it holds tensors but no architecture. Build the model in Python and pass "
            "it: load(path, architecture=MyModel()), where MyModel() has the layers the weights were saved from"
        )
    if not isinstance(architecture, nn.Module):
        raise ModelError(
            f"architecture must be an nn.Module instance (e.g. MyModel()), got {type(architecture).__name__}"
        )
    state = _read_state(path)
    for key in _CHECKPOINT_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    # a weights file is imported for inference: a freshly built architecture is in training mode,
    # which would make its BatchNorm layers normalise with batch statistics
    model = inference_copy(architecture)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the weights in {path} do not fit {type(architecture).__name__}: {exc}") from exc
    return from_torch(model, input_shape, check=check)

"""Safetensors files of our models: weights plus ``format``, ``config`` (JSON) and latent ``space`` metadata.

One implementation for the exposure head, the embedded codec and the prior: each passes its own format tag and
the argument name its errors should carry ("head", "codec", "prior").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from latenthdr import io
from latenthdr.errors import InputError

RESERVED_METADATA = ("format", "config", "space")


def save_model_file(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], *, format: str, config: dict,
                    space: str, extra_metadata: Mapping | None = None,
                    dtype_of: Callable[[str, torch.Tensor], torch.dtype] | None = None) -> Path:
    """Write ``state_dict`` atomically with the reserved metadata and ``extra_metadata`` (non-strings as JSON;
    reserved keys refused). ``dtype_of(name, tensor)`` picks each stored dtype (default: the tensor's own)."""
    from safetensors.torch import save_file

    extra = dict(extra_metadata or {})
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise InputError("extra_metadata", f"reserved keys {clash} cannot be set")
    metadata = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()}
    metadata.update(format=format, config=json.dumps(config), space=space)
    tensors = {k: v.detach().to("cpu", dtype_of(k, v) if dtype_of else v.dtype).contiguous()
               for k, v in state_dict.items()}
    path = Path(path)
    with io.atomic_output(path, overwrite=True) as temp:
        save_file(tensors, str(temp), metadata=metadata)
    return path


def read_model_metadata(path: str | os.PathLike, *, format: str, argument: str, what: str) -> dict[str, str]:
    """The metadata of a model file; InputError naming ``argument`` when it is missing, not safetensors, or not
    a ``format`` file (``what`` names the expected kind in the message, e.g. "exposure head")."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(argument, f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for non-safetensors files
        raise InputError(argument, f"{path}: not a safetensors file ({str(error)[:200]}); accepted: a latenthdr "
                                   f"{what} file (.safetensors)") from error
    if metadata.get("format") != format or "config" not in metadata:
        raise InputError(argument, f"{path}: not a latenthdr {what} (format {metadata.get('format')!r}, "
                                   f"expected {format!r})")
    try:
        config = json.loads(metadata["config"])
    except (ValueError, RecursionError):  # not JSON, an integer of > 4300 digits, deep nesting
        config = None
    if not isinstance(config, dict):
        raise InputError(argument, f"{path}: its config metadata is {metadata['config']!r:.100}; accepted: a JSON "
                                   f"object of the {what}'s architecture (the file is corrupt)")
    return metadata


def config_from_dict(cls, data: Mapping, argument: str):
    """Build the frozen config dataclass ``cls`` from a parsed mapping. Unknown keys, and missing required keys,
    raise InputError naming ``argument`` (e.g. "head config") and listing the accepted keys."""
    import dataclasses

    if not isinstance(data, Mapping):
        raise InputError(argument, f"got {type(data).__name__} {data!r:.100}; accepted: an object of "
                                   f"{cls.__name__} fields")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise InputError(argument, f"unknown keys {unknown}; accepted: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise InputError(argument, f"missing keys {missing}; required: {', '.join(required)}")
    try:
        return cls(**dict(data))
    except InputError:  # the config's own checks name the field and its accepted range
        raise
    except (TypeError, ValueError, OverflowError) as error:  # a value of the wrong type, e.g. widths: 3
        raise InputError(argument, f"{error}; accepted: {cls.__name__} fields of their documented types") from None

"""Safetensors files of our models: weights plus ``format``, ``config`` (JSON) and latent ``space`` metadata.

One implementation for the exposure head, the embedded codec and the prior: each passes its own format tag and
the argument name its errors should carry ("head", "codec", "prior"). :func:`load_model_file` reads a file that
may be damaged or hostile: its config and tensor shapes are checked against a model built on the meta device
(no memory) before anything is allocated, so every bad file is one InputError naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from latenthdr import io
from latenthdr.errors import InputError

RESERVED_METADATA = ("format", "config", "space")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors dtype names a model file may store
EXTRA_TENSORS = 16  # tensors a model may create beyond its file's (non-persistent buffers) while built on meta


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


def load_model_file(path: str | os.PathLike, config_cls, model_cls: Callable[..., torch.nn.Module], *, format: str,
                    argument: str, what: str, expected_space: str | None = None) -> torch.nn.Module:
    """The model (``model_cls(config)``, float32 on the CPU, train mode) of a :func:`save_model_file` file,
    loaded strictly. Its config, its space (against the file's ``space`` metadata and ``expected_space``) and
    its tensors' names, shapes and dtypes (against a ``model_cls`` built on the meta device) are checked before
    any weight is allocated; each failure is an InputError naming ``argument`` and the file."""
    from safetensors import safe_open

    path = Path(path)
    metadata = read_model_metadata(path, format=format, argument=argument, what=what)
    config = _file_config(path, metadata, config_cls, argument)
    if metadata.get("space") != config.space:
        raise InputError(argument, f"{path}: space metadata {metadata.get('space')!r} does not match its config's "
                                   f"space {config.space!r}; accepted: one space in both (the file is corrupt)")
    if expected_space is not None and config.space != expected_space:
        raise InputError(argument, f"{path}: {what} trained for latent space {config.space!r} cannot read latents "
                                   f"of codec {expected_space!r}; use one trained for {expected_space!r}")
    stored = _stored_tensors(path, argument, what)
    _check_tensors(path, stored, _meta_state(path, config, model_cls, len(stored), argument, what), argument, what)
    model = model_cls(config)  # built for real (and initialised as always) only once the file fits it
    with safe_open(str(path), framework="pt") as f:
        model.load_state_dict({name: f.get_tensor(name).float() for name in stored}, strict=True)
    return model


def _file_config(path: Path, metadata: Mapping[str, str], config_cls, argument: str):
    """The config dataclass of a file whose metadata ``read_model_metadata`` accepted; its errors name the file."""
    try:
        return config_cls.from_dict(json.loads(metadata["config"]))
    except InputError as error:  # "HeadConfig.widths: expected ...", "head config: unknown keys ...; accepted: ..."
        raise InputError(argument, f"{path}: its config is refused: {error}") from None


def _stored_tensors(path: Path, argument: str, what: str) -> dict[str, tuple[str, list[int]]]:
    """name -> (safetensors dtype, shape) of every tensor in the file, read from its header (no data)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: (f.get_slice(name).get_dtype(), list(f.get_slice(name).get_shape())) for name in f.keys()}
    except Exception as error:  # safetensors' own error types
        raise InputError(argument, f"{path}: its tensors cannot be read ({str(error)[:200]}); accepted: a latenthdr "
                                   f"{what} file (.safetensors)") from error


def _meta_state(path: Path, config, model_cls, n_stored: int, argument: str, what: str) -> dict[str, list[int]]:
    """name -> shape of the state dict of ``model_cls(config)``, built on the meta device (no memory). The build
    stops once it has created more tensors than the file stores (plus EXTRA_TENSORS): a corrupt config can ask
    for a million blocks, which costs gigabytes of module objects even on the meta device."""
    from torch.nn.modules import module as nn_module

    budget, thread = [n_stored + EXTRA_TENSORS], threading.get_ident()

    def count(*_):
        if threading.get_ident() == thread:
            budget[0] -= 1
            if budget[0] < 0:
                raise _TooManyTensors

    hooks = [nn_module.register_module_parameter_registration_hook(count),
             nn_module.register_module_buffer_registration_hook(count)]
    try:
        with meta_build():
            return {name: list(t.shape) for name, t in model_cls(config).state_dict().items()}
    except _TooManyTensors:
        raise InputError(argument, f"{path}: its config describes a model of more tensors than the file's "
                                   f"{n_stored}; expected a config that matches the file's tensors (the file is "
                                   "corrupt)") from None
    except (TypeError, ValueError, RuntimeError, OverflowError) as error:  # e.g. a width beyond int64
        first_line = str(error).partition("\n")[0]
        raise InputError(argument, f"{path}: its config cannot build the {what} ({first_line:.200}); expected a "
                                   "config written by latenthdr (the file is corrupt)") from None
    finally:
        for hook in hooks:
            hook.remove()


@contextlib.contextmanager
def meta_build():
    """Inside the block, modules are built on the meta device (shapes, no memory) and their weight initialisers
    do nothing: for shape checks, and for models whose every tensor is then assigned from a file
    (``load_state_dict(..., assign=True)``)."""
    with torch.device("meta"), _SkipInitialisers():
        yield


class _TooManyTensors(Exception):
    """Raised inside a meta build that exceeded its tensor budget."""


class _SkipInitialisers(TorchFunctionMode):
    """Weight initialisers of meta tensors do nothing (a meta tensor has no values to set). On the meta device some
    of them (``normal_``, so every ``nn.Embedding``) run through torch's Python decompositions, whose first use
    imports torch._dynamo: about 1 s of start-up for a shape check."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _INITIALISERS:  # nn.init passes its tensor by keyword, Tensor methods as self
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


_INITIALISERS = frozenset(
    [getattr(torch.nn.init, name) for name in ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                                               "eye_", "dirac_", "xavier_uniform_", "xavier_normal_",
                                               "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")]
    + [getattr(torch.Tensor, name) for name in ("normal_", "uniform_", "zero_", "fill_", "random_", "bernoulli_",
                                                "exponential_", "geometric_", "log_normal_", "cauchy_")])


def _check_tensors(path: Path, stored: Mapping[str, tuple[str, list[int]]], expected: Mapping[str, list[int]],
                   argument: str, what: str) -> None:
    """InputError naming the missing, unexpected, misshaped or non-float tensors of the file, if any."""
    missing = [name for name in expected if name not in stored]
    unexpected = [name for name in stored if name not in expected]
    misshaped = [f"{name} is {stored[name][1]} (expected {shape})" for name, shape in expected.items()
                 if name in stored and stored[name][1] != shape]
    not_float = [f"{name} is {stored[name][0]}" for name in expected
                 if name in stored and stored[name][0] not in FLOAT_DTYPES]
    problems = [f"{label} {', '.join(f'{item:.120}' for item in items[:3])}"
                f"{f' and {len(items) - 3} more' if len(items) > 3 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("misshaped", misshaped),
                                     ("not floating point", not_float)) if items]
    if problems:
        raise InputError(argument, f"{path}: its tensors do not match its config ({'; '.join(problems)}); "
                                   f"expected the tensors of the {what} its config describes, stored as "
                                   f"{', '.join(FLOAT_DTYPES)} (the file is corrupt)")

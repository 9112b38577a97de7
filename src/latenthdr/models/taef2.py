"""TAEF2: the tiny autoencoder for the FLUX.2 latent space, built on diffusers' ``AutoencoderTiny``.

TAEF2 (Ollin Boer Bohan, madebyollin/taesd, MIT) has the TAESD layout with 32 latent channels plus a
"pool" branch on six 64-channel blocks that diffusers' ``AutoencoderTinyBlock`` lacks. We add the pools by
swapping those blocks for :class:`PooledTinyBlock`, which keeps the block's own ``conv``/``skip``/``fuse``
modules (so their state-dict keys do not change) and adds ``pool``.

Key mapping from the released files (``../shared/weights/taef2/README.md``):
encoder ``N.*`` -> ``encoder.layers.N.*``; decoder ``N.*`` -> ``decoder.layers.{N-1}.*`` (the released
decoder's position 0 is the weightless soft clamp, which diffusers' ``DecoderTiny`` applies in ``forward``).

Value ranges: diffusers' ``AutoencoderTiny`` takes images in [-1, 1] and returns images in [-1, 1]; the raw
latents are 32 channels on a 1/8 grid, roughly in [-6, 5] with std about 0.9. They approximate the FLUX.2
autoencoder's latent *before* the FLUX.2 pipeline's patchify and batch-norm normalisation, so the TAEF2 latent
space ("taef2") is not the normalised "flux2" space of :class:`latenthdr.models.codecs.Flux2Codec`.

diffusers is imported lazily, inside :func:`build_taef2`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from latenthdr.errors import InputError

ENCODER_FILE = "taef2_encoder.pth"
DECODER_FILE = "taef2_decoder.pth"
LATENT_CHANNELS = 32
POOLED_ENCODER_LAYERS = (11, 12, 13)  # diffusers encoder.layers indices whose block has a pool
POOLED_DECODER_LAYERS = (2, 3, 4)  # diffusers decoder.layers indices (released positions 3, 4, 5)


def taef2_pool(channels: int = 64, hidden: int = 256, groups: int = 4) -> nn.Sequential:
    """The pool branch: conv1x1 (no bias) -> GroupNorm(groups) -> ReLU -> conv1x1 (no bias)."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1, bias=False),
        nn.GroupNorm(groups, hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, channels, 1, bias=False),
    )


class PooledTinyBlock(nn.Module):
    """A TAESD block with a pool branch: x <- x + pool(x); out = ReLU(conv(x) + skip(x)).

    Wraps an existing diffusers ``AutoencoderTinyBlock`` by taking over its ``conv``, ``skip`` and ``fuse``
    submodules, so the state-dict keys of those stay the same and ``pool.*`` keys are added beside them.
    """

    def __init__(self, block: nn.Module, channels: int = 64):
        super().__init__()
        self.conv = block.conv
        self.skip = block.skip
        self.fuse = block.fuse
        self.pool = taef2_pool(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_taef2() -> nn.Module:
    """A randomly initialised TAEF2: diffusers ``AutoencoderTiny(latent_channels=32)`` with the pools added."""
    from diffusers import AutoencoderTiny

    vae = AutoencoderTiny(latent_channels=LATENT_CHANNELS)
    for index in POOLED_ENCODER_LAYERS:
        vae.encoder.layers[index] = PooledTinyBlock(vae.encoder.layers[index])
    for index in POOLED_DECODER_LAYERS:
        vae.decoder.layers[index] = PooledTinyBlock(vae.decoder.layers[index])
    return vae


def taef2_state_dict(encoder_sd: dict, decoder_sd: dict) -> dict[str, torch.Tensor]:
    """Map the released encoder/decoder state dicts onto :func:`build_taef2`'s keys (README mapping)."""
    state = {f"encoder.layers.{key}": value for key, value in encoder_sd.items()}
    for key, value in decoder_sd.items():
        position, rest = key.split(".", 1)
        state[f"decoder.layers.{int(position) - 1}.{rest}"] = value
    return state


def find_taef2_weights(path: str | os.PathLike | None = None) -> Path:
    """The directory holding ``taef2_encoder.pth`` and ``taef2_decoder.pth``.

    Looks, in order, at ``path``, ``$LATENTHDR_TAEF2``, ``$LATENTHDR_SHARED/weights/taef2`` and
    ``../shared/weights/taef2`` beside the repository (or the current directory). Raises InputError naming
    every place tried when none holds both files.
    """
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = []
        if os.environ.get("LATENTHDR_TAEF2"):
            candidates.append(Path(os.environ["LATENTHDR_TAEF2"]))
        if os.environ.get("LATENTHDR_SHARED"):
            candidates.append(Path(os.environ["LATENTHDR_SHARED"]) / "weights" / "taef2")
        repo_root = Path(__file__).resolve().parents[3]
        candidates += [repo_root.parent / "shared" / "weights" / "taef2", Path.cwd().parent / "shared" / "weights" / "taef2"]
    for candidate in candidates:
        if (candidate / ENCODER_FILE).is_file() and (candidate / DECODER_FILE).is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise InputError("codec", f"TAEF2 weights ({ENCODER_FILE}, {DECODER_FILE}) not found; looked in: {tried}. "
                              "Pass 'taef2:/path/to/dir' or set LATENTHDR_TAEF2")


def load_taef2(path: str | os.PathLike | None = None, device="cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """TAEF2 with the released weights, loaded strictly (no missing or unexpected keys), in eval mode.

    The files hold fp16 tensors; they are cast to ``dtype`` (float32 for CPU work).
    """
    directory = find_taef2_weights(path)
    encoder_sd = torch.load(directory / ENCODER_FILE, map_location="cpu", weights_only=True)
    decoder_sd = torch.load(directory / DECODER_FILE, map_location="cpu", weights_only=True)
    vae = build_taef2()
    vae.load_state_dict(taef2_state_dict(encoder_sd, decoder_sd), strict=True)
    # nn.Module.to: diffusers' ModelMixin.to logs a warning whenever a dtype is passed, even with nothing to keep.
    return nn.Module.to(vae, device=device, dtype=dtype).eval()

"""FLUX.1 stage costs on this machine: one denoiser step and one VAE decode (issue 5's stage-cost ratio).

The multi-pass baseline runs the backbone once per EV; LatentHDR runs it once and decodes K frames. Their time
ratio is bounded by the stage costs, so we measure them:

- With a FLUX.1 pipeline at hand (``time_denoiser_step_and_decode(pipe, ...)``): one full transformer forward
  (one denoising step, guidance-distilled: one forward per step) at the requested size and one VAE decode.
- Without the weights (FLUX.1-dev is 12 B parameters, 24 GB in bf16: too big for a small machine): the
  transformer is built block by block from the FLUX.1-dev config values (:data:`FLUX1_DEV`: hidden size
  24 x 128 = 3072, 19 double-stream + 38 single-stream blocks, MLP ratio 4, 512 T5 tokens, RoPE axes 16/56/56)
  with random weights; ONE double-stream block and ONE single-stream block are timed on the real token counts
  (H/16 * W/16 image tokens + 512 text tokens) and the step is extrapolated as
  t_step = 19 t_double + 38 t_single. The embedders and the output layer are left out: they are token-wise
  linear layers of < 0.1% of the FLOPs. The decode is timed on the full FLUX.1 VAE decoder architecture
  (AutoencoderKL, blocks 128/256/512/512, 16 latent channels) with random weights. Random weights cost the same
  time as trained ones (dense layers; no data-dependent sparsity).

Timings are wall seconds, the best of ``repeats`` runs, single process, under ``torch.inference_mode``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from latenthdr.errors import InputError


@dataclass(frozen=True)
class FluxArchitecture:
    """FLUX.1 transformer and VAE sizes (defaults: FLUX.1-dev's published configs)."""

    num_attention_heads: int = 24
    attention_head_dim: int = 128
    double_blocks: int = 19
    single_blocks: int = 38
    mlp_ratio: float = 4.0
    text_tokens: int = 512  # T5 max_sequence_length of FLUX.1-dev
    axes_dims_rope: tuple[int, int, int] = (16, 56, 56)
    vae_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    latent_channels: int = 16

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def vae_downscale(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)


FLUX1_DEV = FluxArchitecture()


def time_denoiser_step_and_decode(spec_or_pipe="flux1-dev", height: int = 512, width: int = 1024, *,
                                  dtype: torch.dtype = torch.bfloat16, architecture: FluxArchitecture = FLUX1_DEV,
                                  repeats: int = 1) -> dict:
    """Seconds for one FLUX.1 denoising step and one VAE decode of a ``height`` x ``width`` image.

    spec_or_pipe: a loaded ``diffusers.FluxPipeline`` (timed whole, in its own dtype, with
    ``architecture.text_tokens`` text tokens), or a backbone spec
    (``models.backbones.load_backbone``; loaded from local files only). When the spec cannot be loaded, the
    block-extrapolation method of the module docstring is used with ``architecture`` and ``dtype``.
    Returns {"method": "pipeline" | "blocks", "denoiser_step_s", "decode_s", "image_tokens", "text_tokens",
    "dtype", ...}; the blocks method adds "double_block_s", "single_block_s" and the architecture.
    """
    _check_size(height, width, 16)
    if isinstance(spec_or_pipe, str):
        from latenthdr.models import backbones

        try:
            spec_or_pipe = backbones.load_backbone(spec_or_pipe, dtype=dtype, local_files_only=True).pipe
        except InputError:
            return time_flux_blocks(architecture, height, width, dtype=dtype, repeats=repeats)
    if not hasattr(spec_or_pipe, "transformer") or not hasattr(spec_or_pipe, "_prepare_latent_image_ids"):
        raise InputError("spec_or_pipe", f"expected a FluxPipeline or a backbone spec, got {type(spec_or_pipe).__name__}")
    return _time_pipeline(spec_or_pipe, height, width, architecture.text_tokens, repeats)


def time_flux_blocks(architecture: FluxArchitecture, height: int, width: int, *, dtype: torch.dtype = torch.bfloat16,
                     repeats: int = 1) -> dict:
    """Block-extrapolated FLUX.1 step time and full-decoder decode time (module docstring), random weights."""
    from diffusers.models.transformers.transformer_flux import FluxTransformerBlock, FluxSingleTransformerBlock

    a = architecture
    _check_size(height, width, 2 * a.vae_downscale)
    n_img = (height // (2 * a.vae_downscale)) * (width // (2 * a.vae_downscale))
    torch.manual_seed(0)
    inputs, small = _block_inputs(a, n_img, dtype), _block_inputs(a, 4, dtype)  # small: warm-up call
    double = FluxTransformerBlock(a.hidden_size, a.num_attention_heads, a.attention_head_dim).to(dtype).eval()
    t_double = _best_of(lambda: double(**inputs), repeats, warmup=lambda: double(**small))
    del double
    single = FluxSingleTransformerBlock(a.hidden_size, a.num_attention_heads, a.attention_head_dim,
                                        a.mlp_ratio).to(dtype).eval()
    t_single = _best_of(lambda: single(**inputs), repeats, warmup=lambda: single(**small))
    del single
    decode_s = _time_decode(_flux_vae(a, dtype), height, width, repeats)
    return {"method": "blocks", "denoiser_step_s": a.double_blocks * t_double + a.single_blocks * t_single,
            "double_block_s": t_double, "single_block_s": t_single, "decode_s": decode_s, "image_tokens": n_img,
            "text_tokens": a.text_tokens, "dtype": str(dtype).removeprefix("torch."), "height": height,
            "width": width, "architecture": asdict(a), "threads": torch.get_num_threads()}


def _block_inputs(a: FluxArchitecture, n_img: int, dtype: torch.dtype) -> dict:
    """Random hidden states, text states, time embedding and the RoPE of FLUX.1's ids for one block call."""
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    generator = torch.Generator().manual_seed(1)
    randn = lambda *shape: torch.randn(*shape, generator=generator).to(dtype)  # noqa: E731
    ids = torch.zeros(a.text_tokens + n_img, 3)
    ids[a.text_tokens:, 2] = torch.arange(n_img, dtype=torch.float32)  # positions only shape the rotation
    rotary = FluxPosEmbed(theta=10000, axes_dim=list(a.axes_dims_rope))(ids)
    return {"hidden_states": randn(1, n_img, a.hidden_size), "encoder_hidden_states": randn(1, a.text_tokens, a.hidden_size),
            "temb": randn(1, a.hidden_size), "image_rotary_emb": rotary}


def _flux_vae(a: FluxArchitecture, dtype: torch.dtype):
    import diffusers

    n = len(a.vae_block_out_channels)
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                                   block_out_channels=a.vae_block_out_channels, layers_per_block=a.vae_layers_per_block,
                                   latent_channels=a.latent_channels, norm_num_groups=a.vae_norm_num_groups,
                                   use_quant_conv=False, use_post_quant_conv=False)
    return torch.nn.Module.to(vae, dtype=dtype).eval()  # diffusers' .to() logs a warning for any dtype


def _time_decode(vae, height: int, width: int, repeats: int) -> float:
    d = 2 ** (len(vae.config.block_out_channels) - 1)
    z = torch.randn(1, vae.config.latent_channels, height // d, width // d, generator=torch.Generator().manual_seed(2))
    z = z.to(next(vae.parameters()).dtype)
    return _best_of(lambda: vae.decode(z), repeats, warmup=lambda: vae.decode(z[..., :2, :2]))


def _time_pipeline(pipe, height: int, width: int, text_tokens: int, repeats: int) -> dict:
    """One full transformer forward with the pipeline's own shapes, and one decode with its VAE."""
    tr = pipe.transformer
    dtype, config, d = tr.dtype, tr.config, 2 * pipe.vae_scale_factor
    n_img, n_txt = (height // d) * (width // d), text_tokens
    generator = torch.Generator().manual_seed(1)
    randn = lambda *shape: torch.randn(*shape, generator=generator).to(dtype=dtype, device=tr.device)  # noqa: E731
    inputs = {"hidden_states": randn(1, n_img, config.in_channels),
              "encoder_hidden_states": randn(1, n_txt, config.joint_attention_dim),
              "pooled_projections": randn(1, config.pooled_projection_dim),
              "timestep": torch.ones(1, dtype=dtype, device=tr.device),
              "guidance": torch.full((1,), 3.5, device=tr.device) if config.guidance_embeds else None,
              "txt_ids": torch.zeros(n_txt, 3, dtype=dtype, device=tr.device),
              "img_ids": pipe._prepare_latent_image_ids(1, height // d, width // d, tr.device, dtype),
              "return_dict": False}
    step = _best_of(lambda: tr(**inputs), repeats)
    return {"method": "pipeline", "denoiser_step_s": step, "decode_s": _time_decode(pipe.vae, height, width, repeats),
            "image_tokens": n_img, "text_tokens": n_txt, "dtype": str(dtype).removeprefix("torch."),
            "height": height, "width": width, "threads": torch.get_num_threads()}


def _best_of(fn, repeats: int, warmup=None) -> float:
    """Best wall time of ``repeats`` calls of fn, after one call of ``warmup`` (a cheap call that pays the
    one-off costs: kernel selection, allocator growth)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError("repeats", f"got {repeats!r}; accepted: an integer >= 1")
    best = float("inf")
    with torch.inference_mode():
        if warmup is not None:
            warmup()
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    return best


def _check_size(height: int, width: int, multiple: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < multiple or value % multiple:
            raise InputError(name, f"got {value!r}; accepted: a positive multiple of {multiple} pixels")

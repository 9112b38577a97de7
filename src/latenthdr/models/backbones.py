"""Scene sources: diffusers text-to-image pipelines -> the scene latent z0 of one diffusion run.

METHOD.md t2h: prompt -> backbone (one diffusion run) -> z0 -> head -> bracket -> merge. A :class:`SceneSource`
returns z0 [B, C, h, w] float32, (h, w) = (H, W) / d, in the *normalised* latent space of the codec whose head
reads it (``source.space == source.codec().space``; models/codecs.py: z = (mu - shift_factor) * scaling_factor
for a diffusers ``AutoencoderKL``). Each pipeline's ``output_type="latent"`` is that space in its own layout,
converted here once with the pipeline's own helpers:
- FLUX.1: packed [B, h/2 * w/2, 4C] -> ``_unpack_latents`` -> [B, 16, h, w];
- FLUX.2: packed [B, h/2 * w/2, 4C], each patch channel standardised with the VAE's batch-norm statistics ->
  ``_unpack_latents_with_ids`` -> ``_unpatchify_latents`` -> [B, 32, h, w], the 1/8 grid on which
  ``codecs.Flux2Codec`` applies the same per-(channel, position-in-patch) statistics;
- SD3: [B, 16, h, w] as is; SDXL: [B, 4, h, w] as is, or mapped to mu * scaling_factor for VAEs with
  ``latents_mean``/``latents_std`` (the pipeline then standardises per channel).

Panoramas (2:1, seam at +-180 degrees): *latent rolling*. After every denoising step (``callback_on_step_end``)
the latent is rolled horizontally by ``roll_stride`` columns (whole tokens), so the image border, where the
denoiser sees no continuation, lies on a different scene column at every step; the last step rolls back to the
noise's yaw. Multistep schedulers' stored outputs roll along. UNets (SDXL) also run with circular padding in
width (:func:`circular_width_padding`): the UNet then commutes with rolls by multiples of its downsampling, so
the seam is like any other column (exact, tested). Measurements on tiny random models: tests/test_backbones.py.

Loading (:func:`load_backbone`): presets in :data:`BACKBONES` (hub ids via diffusers' ``from_pretrained``: the
local Hugging Face cache, or a download) or a local pipeline directory. diffusers is imported lazily; progress
bars are disabled (the library never prints).
"""

from __future__ import annotations

import abc
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError
from latenthdr.models.codecs import LatentCodec, codec_from_module

DIT360_LORA = "fenghora/DiT360-Panorama-Image-Generation"  # the DiT360 authors' FLUX.1-dev LoRA (hub id)


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone: hub id, diffusers pipeline class, sampling defaults (the model cards' values)."""

    hub_id: str
    pipeline: str  # diffusers pipeline class name
    num_inference_steps: int
    guidance_scale: float
    lora: str | None = None
    panorama_prompt_prefix: str = ""  # prepended to prompts when panorama=True (DiT360's captions start so)
    pipeline_kwargs: dict = field(default_factory=dict)


BACKBONES = {
    "flux1-dev": BackboneSpec("black-forest-labs/FLUX.1-dev", "FluxPipeline", 28, 3.5),
    "flux1-schnell": BackboneSpec("black-forest-labs/FLUX.1-schnell", "FluxPipeline", 4, 0.0,
                                  pipeline_kwargs={"max_sequence_length": 256}),
    "flux1-dit360": BackboneSpec("black-forest-labs/FLUX.1-dev", "FluxPipeline", 28, 2.8, lora=DIT360_LORA,
                                 panorama_prompt_prefix="This is a panorama. "),
    "flux2": BackboneSpec("black-forest-labs/FLUX.2-dev", "Flux2Pipeline", 50, 4.0),
    "sd3": BackboneSpec("stabilityai/stable-diffusion-3.5-large", "StableDiffusion3Pipeline", 28, 3.5),
    "sdxl": BackboneSpec("stabilityai/stable-diffusion-xl-base-1.0", "StableDiffusionXLPipeline", 50, 5.0),
}


# ------------------------------------------------------------------------------------------ interface
class SceneSource(abc.ABC):
    """Text -> scene latent z0 in one diffusion run per :meth:`generate` call.

    ``space``: latent-space id of z0 (equals ``codec().space``). ``last_timings``: the last call's wall seconds
    ("text_encoding_s": call start to the first denoiser forward, "diffusion_s": the rest, "total_s") and counts
    ("steps", "denoiser_calls", "diffusion_runs").
    """

    diffusion_runs: int = 1
    space: str

    def __init__(self):
        self.last_timings: dict[str, float] = {}

    @abc.abstractmethod
    def generate(self, prompt: str | list[str] | None, *, height: int, width: int, panorama: bool = False,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 **pipeline_kwargs) -> torch.Tensor:
        """One diffusion run -> z0 [B, C, height/d, width/d] float32, normalised latents of ``codec()``."""

    @abc.abstractmethod
    def codec(self) -> LatentCodec:
        """The codec adapter of the backbone's own VAE (decodes z0; its head reads z0)."""


class DiffusersSceneSource(SceneSource):
    """A diffusers text-to-image pipeline as a scene source (subclasses own the latent layout).

    pipe: the pipeline (components on one device). num_inference_steps / guidance_scale: defaults for
    :meth:`generate`. roll_stride: latent columns rolled per step for panoramas (None: about W / steps, whole
    tokens; 0: no rolling). circular_padding: circular convs in width for panoramas (UNets only).
    panorama_prompt_prefix: prepended to every prompt when panorama=True. pipeline_kwargs: defaults passed to
    every call (``generate``'s own kwargs override them).
    """

    denoiser_name = "transformer"

    def __init__(self, pipe, *, num_inference_steps: int = 28, guidance_scale: float = 3.5,
                 roll_stride: int | None = None, circular_padding: bool = False, panorama_prompt_prefix: str = "",
                 pipeline_kwargs: dict | None = None):
        super().__init__()
        self.pipe = pipe
        self.num_inference_steps, self.guidance_scale = int(num_inference_steps), float(guidance_scale)
        self.roll_stride, self.circular_padding = roll_stride, bool(circular_padding)
        self.panorama_prompt_prefix = panorama_prompt_prefix
        self.pipeline_kwargs = dict(pipeline_kwargs or {})
        self._codec: LatentCodec | None = None
        pipe.set_progress_bar_config(disable=True)

    @property
    def space(self) -> str:
        return self.codec().space

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipe, self.denoiser_name)

    def codec(self) -> LatentCodec:
        if self._codec is None:
            self._codec = codec_from_module(self.pipe.vae)
        return self._codec

    # -- layout: the pipeline's latents <-> a spatial grid [B, C', h', w'] (rolled), and grid -> z0
    def to_grid(self, latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Pipeline latents (its ``output_type="latent"`` layout) -> spatial grid [B, C', h', w']."""
        return latents

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_grid`."""
        return grid

    def grid_to_z0(self, grid: torch.Tensor) -> torch.Tensor:
        """Spatial grid -> z0 [B, C, h, w] float32 in the codec's normalised space."""
        return grid.float()

    def roll_unit(self, panorama: bool) -> int:
        """Grid columns of one roll quantum (one token for transformers)."""
        return 1

    def grid_columns(self, width: int) -> int:
        """Grid width w' for an image ``width`` pixels wide."""
        return width // self.pipe.vae_scale_factor

    @abc.abstractmethod
    def size_multiple(self, panorama: bool) -> int:
        """Height and width must be multiples of this many pixels."""

    # -- generation
    def generate(self, prompt, *, height, width, panorama=False, generator=None, num_inference_steps=None,
                 guidance_scale=None, **pipeline_kwargs):
        """One diffusion run -> z0 [B, C, height/d, width/d] float32 (normalised, ``self.space``).

        prompt: str, list of B str, or None with ``prompt_embeds=`` (and the pipeline's pooled/negative embeds)
        in ``pipeline_kwargs``. height, width: pixels, multiples of :meth:`size_multiple`; panorama: 2:1 only,
        generated with latent rolling (and circular UNet padding). generator: one, or one per prompt.
        """
        self._check_size(height, width, panorama)
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        steps = _positive_int("num_inference_steps", steps)
        kwargs = {**self.pipeline_kwargs, **pipeline_kwargs,
                  "guidance_scale": self.guidance_scale if guidance_scale is None else float(guidance_scale)}
        roller = _LatentRoller(self, height, width, steps, self.roll_stride) if panorama else None
        if roller is not None and roller.stride:
            kwargs["callback_on_step_end"] = roller
        padding = circular_width_padding(self.denoiser) if panorama and self.circular_padding else contextlib.nullcontext()
        with _DenoiserClock(self.denoiser) as clock, padding:
            latents = self.pipe(prompt=self._prompt(prompt, panorama), height=height, width=width,
                                generator=generator, num_inference_steps=steps, output_type="latent",
                                return_dict=False, **kwargs)[0]
        z0 = self.grid_to_z0(self.to_grid(latents, height, width))
        self.last_timings = clock.timings(steps)
        return z0

    def _prompt(self, prompt, panorama: bool):
        if prompt is None or not (panorama and self.panorama_prompt_prefix):
            return prompt
        if isinstance(prompt, str):
            return self.panorama_prompt_prefix + prompt
        return [self.panorama_prompt_prefix + p for p in prompt]

    def _check_size(self, height, width, panorama: bool) -> None:
        m = self.size_multiple(panorama)
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < m or value % m:
                raise InputError(name, f"got {value!r}; accepted: a positive multiple of {m} pixels")
        if panorama and width != 2 * height:
            raise InputError("width", f"a panorama is 2:1 (equirectangular); got {width}x{height}, "
                                      f"accepted: width = 2 * height = {2 * height}")


# ------------------------------------------------------------------------------------------ adapters
class Flux1Source(DiffusersSceneSource):
    """FLUX.1 dev/schnell (``FluxPipeline``), also with a LoRA such as DiT360. Packed [B, h/2*w/2, 4C]."""

    def to_grid(self, latents, height, width):
        return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)  # [B, C, h, w]

    def from_grid(self, grid):
        b, c, h, w = grid.shape
        return self.pipe._pack_latents(grid, b, c, h, w)

    def roll_unit(self, panorama):
        return 2  # one 2x2 token

    def size_multiple(self, panorama):
        return 2 * self.pipe.vae_scale_factor


class Flux2Source(DiffusersSceneSource):
    """FLUX.2 (``Flux2Pipeline``): tokens are batch-normed 2x2 patches; z0 is on the 1/8 grid (codecs.Flux2Codec)."""

    def to_grid(self, latents, height, width):
        b, d = latents.shape[0], 2 * self.pipe.vae_scale_factor
        ids = self.pipe._prepare_latent_ids(latents.new_empty(b, 1, height // d, width // d)).to(latents.device)
        return self.pipe._unpack_latents_with_ids(latents, ids)  # [B, 4C, h/2, w/2], patch-normalised

    def from_grid(self, grid):
        return self.pipe._pack_latents(grid)

    def grid_to_z0(self, grid):
        return self.pipe._unpatchify_latents(grid).float()  # [B, C, h, w]

    def grid_columns(self, width):
        return width // (2 * self.pipe.vae_scale_factor)

    def size_multiple(self, panorama):
        return 2 * self.pipe.vae_scale_factor


class SD3Source(DiffusersSceneSource):
    """Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``): latents [B, 16, h, w], already normalised."""

    def roll_unit(self, panorama):
        return int(self.pipe.transformer.config.patch_size)

    def size_multiple(self, panorama):
        return self.pipe.vae_scale_factor * int(self.pipe.transformer.config.patch_size)


class SDXLSource(DiffusersSceneSource):
    """SDXL (``StableDiffusionXLPipeline``): UNet latents [B, 4, h, w]; circular padding for panoramas."""

    denoiser_name = "unet"

    def __init__(self, pipe, **options):
        options.setdefault("circular_padding", True)
        super().__init__(pipe, **options)

    def grid_to_z0(self, grid):
        config, z = self.pipe.vae.config, grid.float()
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is None or std is None:
            return z  # z = mu * scaling_factor already
        view = lambda v: torch.tensor(v, dtype=z.dtype, device=z.device).view(1, -1, 1, 1)  # noqa: E731
        return z * view(std) + view(mean) * float(config["scaling_factor"])  # (mu - m) s / sd -> mu s

    def roll_unit(self, panorama):
        return self._unet_factor() if panorama and self.circular_padding else 1

    def size_multiple(self, panorama):
        factor = self._unet_factor() if panorama and self.circular_padding else 1
        return self.pipe.vae_scale_factor * factor

    def _unet_factor(self) -> int:
        return 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)


# ------------------------------------------------------------------------------ panorama machinery
class _LatentRoller:
    """``callback_on_step_end`` that rolls the latents horizontally by ``stride`` grid columns after every step
    and back to the starting yaw after the last one (module docstring). Multistep scheduler history is rolled
    along (``model_outputs``, ``last_sample``)."""

    def __init__(self, source: DiffusersSceneSource, height: int, width: int, steps: int, stride: int | None):
        self.source, self.height, self.width, self.steps = source, height, width, steps
        unit = source.roll_unit(True)
        grid_width = source.grid_columns(width)
        if stride is None:
            stride = unit * max(1, round(grid_width / unit / max(steps, 1)))
        if stride < 0 or stride % unit:
            raise InputError("roll_stride", f"got {stride}; accepted: a multiple of {unit} latent columns >= 0")
        self.stride, self.grid_width, self.offset = int(stride), grid_width, 0

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        target = 0 if step == self.steps - 1 else (self.offset + self.stride) % self.grid_width
        shift, self.offset = target - self.offset, target
        if shift:
            callback_kwargs["latents"] = self.roll(callback_kwargs["latents"], shift)
            _roll_scheduler_history(pipe.scheduler, lambda x: self.roll(x, shift), callback_kwargs["latents"].shape)
        return callback_kwargs

    def roll(self, latents: torch.Tensor, shift: int) -> torch.Tensor:
        grid = self.source.to_grid(latents, self.height, self.width)
        return self.source.from_grid(torch.roll(grid, shift, dims=-1)).to(latents.dtype)


def _roll_scheduler_history(scheduler, roll, shape) -> None:
    outputs = getattr(scheduler, "model_outputs", None)
    if isinstance(outputs, list):
        scheduler.model_outputs = [roll(x) if isinstance(x, torch.Tensor) and x.shape == shape else x for x in outputs]
    last = getattr(scheduler, "last_sample", None)
    if isinstance(last, torch.Tensor) and last.shape == shape:
        scheduler.last_sample = roll(last)


@contextlib.contextmanager
def circular_width_padding(module: nn.Module):
    """Inside the block, every ``nn.Conv2d`` of ``module`` with zero padding (ph, pw) pads circularly by pw in
    width and with zeros by ph in height (a cylinder: the +-180 degree seam of a panorama is interior).
    Restores the convs on exit. Widths must stay divisible through the strided convs for exact wrap-around."""
    patched = []
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple) \
                and any(conv.padding):
            ph, pw = conv.padding
            hook = conv.register_forward_pre_hook(
                lambda m, args, ph=ph, pw=pw: (F.pad(F.pad(args[0], (pw, pw, 0, 0), mode="circular"), (0, 0, ph, ph)),
                                               *args[1:]))
            conv.padding = (0, 0)
            patched.append((conv, (ph, pw), hook))
    try:
        yield module
    finally:
        for conv, padding, hook in patched:
            conv.padding = padding
            hook.remove()


class _DenoiserClock:
    """Counts denoiser forward calls and times the text-encoding phase (until the first call) vs diffusion."""

    def __init__(self, denoiser: nn.Module):
        self.denoiser, self.calls, self.first = denoiser, 0, None

    def _pre_hook(self, module, args):
        if self.first is None:
            self.first = time.perf_counter()
        self.calls += 1

    def __enter__(self):
        self.start = time.perf_counter()
        self.handle = self.denoiser.register_forward_pre_hook(self._pre_hook)
        return self

    def __exit__(self, *exc):
        self.end = time.perf_counter()
        self.handle.remove()

    def timings(self, steps: int) -> dict[str, float]:
        first = self.end if self.first is None else self.first
        return {"text_encoding_s": first - self.start, "diffusion_s": self.end - first,
                "total_s": self.end - self.start, "steps": steps, "denoiser_calls": self.calls,
                "diffusion_runs": 1}


# --------------------------------------------------------------------------------------------- loading
ADAPTERS = {"FluxPipeline": Flux1Source, "Flux2Pipeline": Flux2Source,
            "StableDiffusion3Pipeline": SD3Source, "StableDiffusionXLPipeline": SDXLSource}


def source_from_pipeline(pipe, **options) -> DiffusersSceneSource:
    """Wrap a loaded diffusers pipeline in its adapter (by class, subclasses included); options as
    :class:`DiffusersSceneSource`. InputError for other pipeline classes."""
    import diffusers

    for name, adapter in ADAPTERS.items():
        if isinstance(pipe, getattr(diffusers, name)):
            return adapter(pipe, **options)
    raise InputError("backbone", f"unsupported pipeline {type(pipe).__name__}; accepted: {', '.join(ADAPTERS)}")


def load_backbone(spec: str, device="cpu", dtype: torch.dtype = torch.bfloat16, *, lora: str | None = None,
                  roll_stride: int | None = None, local_files_only: bool = False, **components) -> DiffusersSceneSource:
    """A scene source from a name in :data:`BACKBONES` or a local diffusers pipeline directory.

    lora: a LoRA hub id / file / directory to load into the pipeline (``load_lora_weights``, needs ``peft``);
    "flux1-dit360" defaults to :data:`DIT360_LORA`. Hub ids resolve through the local Hugging Face cache (or a
    download unless ``local_files_only``). ``components`` replace pipeline components (diffusers
    ``from_pretrained`` keywords, e.g. ``text_encoder=None`` when calling with ``prompt_embeds``). Unknown specs
    and unloadable pipelines raise InputError.
    """
    spec = str(spec)
    preset = BACKBONES.get(spec)
    if preset is not None:
        path, class_name = preset.hub_id, preset.pipeline
    else:
        index = Path(spec).expanduser() / "model_index.json"
        if not index.is_file():
            raise InputError("backbone", f"unknown backbone {spec!r}; accepted: {', '.join(BACKBONES)} or a local "
                                         "diffusers pipeline directory (model_index.json)")
        path, class_name = str(index.parent), json.loads(index.read_text()).get("_class_name", "")
    if class_name not in ADAPTERS:
        raise InputError("backbone", f"{spec!r} is a {class_name or 'unnamed'} pipeline; accepted: {', '.join(ADAPTERS)}")
    pipe = _from_pretrained(class_name, path, dtype, local_files_only, components).to(device)
    lora = lora or (preset.lora if preset else None)
    if lora:
        _load_lora(pipe, lora)
    options = {"roll_stride": roll_stride}
    if preset is not None:
        options.update(num_inference_steps=preset.num_inference_steps, guidance_scale=preset.guidance_scale,
                       panorama_prompt_prefix=preset.panorama_prompt_prefix, pipeline_kwargs=preset.pipeline_kwargs)
    return ADAPTERS[class_name](pipe, **options)


def _from_pretrained(class_name: str, path: str, dtype, local_files_only: bool, components: dict):
    import diffusers

    try:
        return getattr(diffusers, class_name).from_pretrained(path, dtype=dtype, local_files_only=local_files_only,
                                                              **components)
    except (OSError, ValueError) as error:
        raise InputError("backbone", f"cannot load {class_name} from {path!r}: {error}") from error


def _load_lora(pipe, lora: str) -> None:
    try:
        pipe.load_lora_weights(lora)
    except (OSError, ValueError, ImportError) as error:  # ValueError: diffusers without the peft backend
        raise InputError("lora", f"cannot load LoRA {lora!r} (needs `pip install peft`): {error}") from error


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(name, f"got {value!r}; accepted: an integer >= 1")
    return value

"""LatentHDRPipeline: named inference stages over a latent codec, an exposure head and the merge.

Data flow (DESIGN.md): image --codec.encode--> z0 --head, one batched pass--> z_e --codec.decode, chunked-->
y_e --merge (METHOD.md Eq. 9)--> H. Text-to-HDR (:meth:`LatentHDRPipeline.generate`, or ``__call__(prompt=...)``)
replaces the encode stage by a *scene* stage: a scene source (the embedded prior, ``models/prior.py``, or a
diffusers backbone, ``models/backbones.py``) turns the prompt into z0 in one diffusion run, in the codec's
latent space; expose/decode/merge are shared. The multi-pass baseline (``multipass=True``) runs the scene
stage once per EV with the same noise (an EV-conditioned source) and skips the head. Every stage is a small
method; ``__call__`` and ``generate`` only list them and record their wall times. Inference only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from latenthdr import exposure, merge, response
from latenthdr import panorama as equirect
from latenthdr.errors import InputError


@dataclass
class LatentHDROutput:
    """What one pipeline call returns.

    hdr: [B, 3, H, W] float32 linear radiance, 1.0 = the EV-0 frame's clipping level.
    brackets: [B, K, 3, H, W] float32 display-encoded (``curve``) decoded frames in [0, 1]; None when the decoding
    was selective (image-to-HDR by default: only tiles of the frames the merge reads were decoded; call with
    ``selective=False`` for whole frames, or decode ``z`` with :meth:`LatentHDRPipeline.decode`).
    evs: the K exposure values (stops) of the ladder. z0: [B, C, h, w] scene latent. z: [B, K', C, h, w] bracket
    latents at the EVs ``z_evs``: every EV of the ladder, except with selective decoding, where the head predicts
    only the frames the merge reads (``LatentHDRPipeline.merged_frames``: up to EV 0 by default).
    plow / phigh: per-image fractions of pixels that needed the merge's dark / bright fallback.
    timings: wall seconds per stage (encode or text_encoding + diffusion, head, decode, merge).
    diffusion_runs: scene-source runs behind the output (0 for image-to-HDR, 1 for text-to-HDR, K multi-pass).
    seam_shift_px: columns by which ``brackets`` and ``hdr`` are rolled left against ``codec.decode(z)``: half a
    latent cell for generated panoramas (``LatentHDRPipeline.seam_shift_px``), 0 otherwise.
    decoded: [B, H, W] bool, the pixels the merge read the frames at, when the decoding was selective
    (:meth:`LatentHDRPipeline.decode_and_merge`); None: every frame decoded whole.
    """

    hdr: torch.Tensor
    brackets: torch.Tensor | None
    evs: tuple[float, ...]
    z0: torch.Tensor
    z: torch.Tensor
    plow: list[float]
    phigh: list[float]
    panorama: bool
    timings: dict[str, float] = field(default_factory=dict)
    diffusion_runs: int = 0
    seam_shift_px: int = 0
    decoded: torch.Tensor | None = None
    z_evs: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.z_evs is None:
            self.z_evs = tuple(self.evs)


class LatentHDRPipeline:
    """Image-to-HDR (and, with a scene source, text-to-HDR) with one latent and one batched head pass.

    codec: a ``latenthdr.models.codecs.LatentCodec``; head: an ``ExposureHead`` trained for ``codec.space``.
    curve: the display curve of the bracket frames the head was trained on (METHOD.md: gamma 2.2).
    scene_source: for text-to-HDR, an object with ``space`` (== codec.space), ``generate(prompt, height=,
    width=, panorama=, generator=, ...) -> z0`` and ``last_timings`` ("text_encoding_s", "diffusion_s").
    merge_options: keyword arguments of ``merge.merge_with_input`` for image-to-HDR (``MERGE_OPTIONS``: how far the
    predicted highlights are trusted); unset ones take ``DEFAULT_MERGE_OPTIONS``, then that function's defaults.
    head_precision: "float32", "bfloat16" (the head's convolutions under bfloat16 autocast; z0 and the residual
    sum stay float32) or "auto" (bfloat16 on a GPU that supports it; float32 on CPUs, where bfloat16 kernels
    were not deterministic from run to run). The head's
    output moves by about 1e-4 in mean squared latent error, 1000x below its own error (docs/t2h.md).
    """

    def __init__(self, codec, head, curve: str = "gamma2.2", decode_chunk_size: int = 4, scene_source=None,
                 head_precision: str = "auto", merge_options: dict | None = None, decode_tile: int = 16,
                 decode_margin: int | None = None):
        if head.config.space != codec.space:
            raise InputError(
                "head", f"the head was trained for latent space {head.config.space!r}; the codec is {codec.space!r}"
            )
        if head.config.frame_channels and head.config.frame_patch != codec.downscale:
            raise InputError("head", f"the head reads the EV-0 frame in {head.config.frame_patch}-pixel cells; the "
                                     f"codec's latent cells are {codec.downscale} pixels")
        if scene_source is not None and scene_source.space != codec.space:
            raise InputError("scene_source", f"the scene source makes latents of space {scene_source.space!r}; "
                                             f"the codec is {codec.space!r}")
        self.codec, self.head, self.curve = codec, head.eval(), response.check_curve(curve)
        self.decode_chunk_size, self.decode_tile, self.decode_margin = decode_chunk_size, decode_tile, decode_margin
        self.scene_source = scene_source
        self.head_precision = head_precision
        self.head_bfloat16 = _resolve_head_precision(head_precision, next(head.parameters()).device)
        self.merge_options = check_merge_options({**DEFAULT_MERGE_OPTIONS, **(merge_options or {})})
        # Where each component came from (``pretrained.Component``s by role), set by from_pretrained; save_pretrained
        # copies those files, or writes from memory what has no origin.
        self.origins: dict | None = None

    @classmethod
    def from_pretrained(cls, pretrained: str | os.PathLike | None = None, *, codec: str | None = None,
                        head: str | None = None, device: str = "cpu", scene: str | None = None,
                        scene_options: dict | None = None, revision: str | None = None, local_files_only: bool = False,
                        **kwargs) -> "LatentHDRPipeline":
        """A pipeline from a folder written by :meth:`save_pretrained` (or a Hugging Face hub id ``owner/name`` of
        one), or from its components. With no arguments: the embedded default (the package's own pipeline folder,
        ``weights/``), which needs no network and no optional dependency.

        pretrained: a pipeline folder (``latenthdr_pipeline.json`` and its weight files, each checked against the
        config's sha256), or a hub id, fetched with huggingface_hub's ``snapshot_download`` into the Hugging Face
        cache (a download from huggingface.co unless cached; ``revision``, ``local_files_only``; needs the models
        extra). The keywords below replace the folder's components when given.
        codec: a codec spec (``models.codecs.load_codec``: "taef2", "taef2:DIR", a diffusers VAE folder or hub id;
        "embedded" for ours; None: the folder's, else the embedded default). head: a head file (None: the folder's,
        else the head shipped for the codec's latent space, ``models.registry``).
        scene (text-to-HDR): None (the folder's; none without a folder: image-to-HDR only); "embedded" (the prior
        shipped for the codec's space); a prior file (``*.safetensors``); or a backbone name / pipeline folder
        (``models.backbones.load_backbone``, whose own VAE is then the codec: ``codec`` must be None). scene_options:
        keyword arguments of the prior (``scheduler``) or of ``load_backbone``.
        kwargs: the constructor's settings (``curve``, ``merge_options``, ``head_precision``, ...), over the
        folder's; ``merge_options`` updates the folder's options.
        """
        from latenthdr import pretrained as folders

        loaded = folders.load(pretrained, codec=codec, head=head, device=device, scene=scene,
                              scene_options=scene_options, revision=revision, local_files_only=local_files_only)
        settings = dict(loaded.settings)
        if "merge_options" in kwargs and "merge_options" in settings:
            kwargs["merge_options"] = {**settings["merge_options"], **(kwargs["merge_options"] or {})}
        pipe = cls(loaded.codec, loaded.head, scene_source=loaded.scene_source, **{**settings, **kwargs})
        pipe.origins = loaded.origins
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write this pipeline as a folder :meth:`from_pretrained` reads: ``latenthdr_pipeline.json`` (format version,
        latent space, components, :meth:`settings`) and the weight files, all written at once or none
        (``io.output_set``). Weight files are copied from where the pipeline loaded them (written from memory when
        the weights changed since); components whose weights live elsewhere are recorded as specs and not copied
        (TAEF2, diffusers VAEs and backbones: ``pretrained.NOT_COPIED``). Existing files of the folder are refused
        (OutputExistsError) unless ``overwrite``. Returns the folder."""
        from latenthdr import pretrained as folders

        return folders.save(self, save_directory, overwrite=overwrite)

    def settings(self) -> dict:
        """The constructor settings that :meth:`save_pretrained` records (merge options resolved)."""
        return {"curve": self.curve, "merge_options": dict(self.merge_options), "head_precision": self.head_precision,
                "decode_chunk_size": self.decode_chunk_size, "decode_tile": self.decode_tile,
                "decode_margin": self.decode_margin}

    @torch.inference_mode()
    def __call__(
        self,
        image: torch.Tensor | None = None,
        evs: str | Sequence[float] = exposure.DEFAULT_LADDER,
        panorama: str | bool = "auto",
        blend: bool = True,
        *,
        selective: bool = True,
        prompt: str | Sequence[str] | None = None,
        callback: Progress | None = None,
        **generate_options,
    ) -> LatentHDROutput:
        """Image to HDR, or text to HDR with ``prompt=`` (then :meth:`generate` with ``generate_options``).

        image: [B, 3, H, W] or [3, H, W] float display-encoded (``self.curve``) in [0, 1] (the EV-0 frame).
        panorama: "auto" (2:1 aspect), True or False. blend: True (the default, our best) keeps the input where
        it is well exposed and lets the predicted frames speak only where it clips or is black
        (``merge.merge_with_input``); False is the paper's merge of the decoded frames alone (METHOD.md Eq. 9).
        selective: with ``blend``, predict only the frames that merge reads and decode only the tiles it reads,
        merged tile by tile (:meth:`decode_and_merge`: no whole bracket in memory, ``brackets`` None), where the
        codec decodes in windows; False, or a codec that cannot: every frame predicted and decoded whole.
        callback: ``callback(stage, done, total)``, called with ``done`` 0 when a stage starts and after each of its
        ``total`` units (``PROGRESS_STAGES``); an exception raised in it stops the call."""
        if (image is None) == (prompt is None):
            raise InputError("image/prompt", "give either an image (image-to-HDR) or a prompt (text-to-HDR)")
        if prompt is not None:
            return self.generate(prompt, evs=evs, panorama=panorama is True or panorama == "on", callback=callback,
                                 **generate_options)
        evs = exposure.parse_ev_ladder(evs, require_zero=True)
        image = _check_image(image)
        is_pano = _resolve_panorama(panorama, image.shape[-2:])
        timings: dict[str, float] = {}
        with _timed(timings, "encode"):
            _report(callback, "encode", 0, 1)
            z0 = self.encode(image, is_pano)
            _report(callback, "encode", 1, 1)
        streamed = blend and selective and self.codec.tail_radius is not None
        frames = self.merged_frames(evs) if streamed else list(range(len(evs)))
        z_evs = tuple(evs[k] for k in frames)
        with _timed(timings, "head"):
            z = self.expose(z0, z_evs, is_pano, self.head_inputs(z0, is_pano, image), callback)
        if streamed:
            hdr, decoded, plow, phigh = self.decode_and_merge(z, z_evs, is_pano, image, timings, callback)
            return LatentHDROutput(hdr, None, evs, z0, z, plow, phigh, is_pano, timings, decoded=decoded,
                                   z_evs=z_evs)
        with _timed(timings, "decode"):
            y = self.decode(z, is_pano, image.shape[-2:], callback)
        with _timed(timings, "merge"):
            _report(callback, "merge", 0, 1)
            result = self.merge(y, evs, image if blend else None, is_pano)
            _report(callback, "merge", 1, 1)
        return LatentHDROutput(result.hdr, y, evs, z0, z, _per_image(result.plow), _per_image(result.phigh),
                               is_pano, timings, z_evs=evs)

    @torch.inference_mode()
    def generate(
        self,
        prompt: str | Sequence[str],
        evs: str | Sequence[float] = exposure.DEFAULT_LADDER,
        panorama: bool = False,
        height: int | None = None,
        width: int | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        multipass: bool = False,
        callback: Progress | None = None,
        **source_options,
    ) -> LatentHDROutput:
        """Text to HDR: scene (one diffusion run) -> expose -> decode -> merge.

        prompt: str or list of B str. height/width: pixels (default 512x256 for panoramas, 384x288 otherwise);
        panorama: 2:1, seamless. generator: one, or one per prompt. multipass: the baseline, one scene-source
        run per EV (``ev=e``) from the same generator state, no head. source_options: passed to the source's
        ``generate`` (num_inference_steps, guidance_scale). Timings: text_encoding, diffusion, head, decode, merge.
        callback: as in ``__call__``; the "diffusion" stage (text encoding included) has one unit per run.
        """
        self._require_scene_source(multipass)  # a clear error before any work
        evs = exposure.parse_ev_ladder(evs, require_zero=True)
        height, width = output_size(height, width, bool(panorama))
        timings = {"text_encoding": 0.0, "diffusion": 0.0, "head": 0.0}
        if multipass:
            z = self.scene_per_ev(prompt, evs, panorama, height, width, generator, timings, callback=callback,
                                  **source_options)
            z0 = z[:, evs.index(0.0)]
        else:
            _report(callback, "diffusion", 0, 1)
            z0 = self.scene(prompt, panorama, height, width, generator, timings, **source_options)
            _report(callback, "diffusion", 1, 1)
            with _timed(timings, "decode"):  # a head that reads the EV-0 frame gets the decoded z0
                inputs = self.head_inputs(z0, panorama)
            with _timed(timings, "head"):
                z = self.expose(z0, evs, panorama, inputs, callback)
        with _timed(timings, "decode"):
            y = self.decode(z, panorama, (height, width), callback)
            shift = self.seam_shift_px if panorama else 0
            y = torch.roll(y, -shift, dims=-1) if shift else y
        with _timed(timings, "merge"):
            _report(callback, "merge", 0, 1)
            result = self.merge(y, evs, None)
            _report(callback, "merge", 1, 1)
        return LatentHDROutput(result.hdr, y, evs, z0, z, _per_image(result.plow), _per_image(result.phigh),
                               bool(panorama), timings, len(evs) if multipass else 1, shift)

    @property
    def seam_shift_px(self) -> int:
        """Columns (half a latent cell) by which generated panoramas are rolled left after decoding, so that
        the +-180 degree seam falls in the middle of a latent cell instead of on a cell border.

        A generated scene has no yaw origin of its own: the prior, head and decoder commute with rolls by whole
        latent cells (tests/test_prior.py), so any column could be the seam. Cell borders are where a patch
        decoder leaves its residual block edges (docs/t2h.md), and with the seam on one, the seam step is a
        block-edge step; mid-cell it is an ordinary column step. The cost is a yaw of half a cell (2.8 degrees
        at 512 columns) that no caller can tell from another seed. Image-to-HDR keeps the input's columns."""
        return self.codec.downscale // 2

    def scene(self, prompt, panorama: bool, height: int, width: int, generator, timings: dict,
              ev: float | None = None, **source_options) -> torch.Tensor:
        """prompt -> z0 [B, C, h, w] (or z_ev with ``ev``) in one diffusion run; adds the source's text-encoding
        and diffusion seconds to ``timings``."""
        if ev is not None:
            source_options["ev"] = ev
        z0 = self.scene_source.generate(prompt, height=height, width=width, panorama=bool(panorama),
                                        generator=generator, **source_options)
        t = self.scene_source.last_timings
        timings["text_encoding"] += t.get("text_encoding_s", 0.0)
        timings["diffusion"] += t.get("diffusion_s", t.get("total_s", 0.0))
        return z0.to(self.codec.device, torch.float32)

    def scene_per_ev(self, prompt, evs, panorama: bool, height: int, width: int, generator, timings: dict,
                     callback: Progress | None = None, **source_options) -> torch.Tensor:
        """The multi-pass baseline: z [B, K, C, h, w], one run per EV, each from the same generator state."""
        generators = generator if isinstance(generator, (list, tuple)) else [generator]
        states = [g.get_state() if g is not None else None for g in generators]
        frames = []
        _report(callback, "diffusion", 0, len(evs))
        for e in evs:
            for g, state in zip(generators, states):
                if g is not None:
                    g.set_state(state)
            frames.append(self.scene(prompt, panorama, height, width, generator, timings, ev=e, **source_options))
            _report(callback, "diffusion", len(frames), len(evs))
        return torch.stack(frames, dim=1)

    def _require_scene_source(self, multipass: bool):
        if self.scene_source is None:
            raise InputError("prompt", "this pipeline has no scene source; build it with "
                                       "from_pretrained(scene='embedded' | PRIOR_FILE | BACKBONE)")
        if multipass and not getattr(self.scene_source, "supports_ev", False):
            raise InputError("multipass", f"{type(self.scene_source).__name__} is not EV-conditioned; the multi-pass "
                                          "baseline needs the embedded prior")
        return self.scene_source

    def describe(self, head_path: str | None = None) -> dict:
        """What runs, for sidecars and EXR metadata (``registry.describe``) plus the head's precision. head_path:
        the head file (None: the one this pipeline was loaded from, else the head shipped for the codec's space)."""
        from latenthdr.models import registry

        if head_path is None and self.origins is not None:
            head_path = self.origins["head"].file
        return registry.describe(self.codec, head_path) | {
            "head_precision": "bfloat16" if self.head_bfloat16 else "float32"}

    def memory_estimate(self, height: int, width: int, frames: int, selective: bool = True) -> int | None:
        """Estimated peak resident memory, in bytes, of image-to-HDR of one ``height`` x ``width`` image with
        ``frames`` EVs in this process (models, torch and the job), or None for a latent space not measured.
        selective: the default call (the input-preserving merge over selectively decoded tiles,
        ``STREAMED_MEMORY_MODELS``: no whole bracket, so the frames hardly count); False: every frame decoded whole
        (``blend=False`` or ``selective=False``, ``MEMORY_MODELS``)."""
        if selective and self.codec.tail_radius is not None:
            model = STREAMED_MEMORY_MODELS.get(self.codec.space)
            return None if model is None else int(model[0] + height * width * model[1])
        model = MEMORY_MODELS.get(self.codec.space)
        if model is None:
            return None
        base, per_pixel = model
        return int(base + height * width * (per_pixel + frames * BRACKET_BYTES_PER_PIXEL_FRAME))

    def encode(self, image: torch.Tensor, is_pano: bool) -> torch.Tensor:
        """[B,3,H,W] display [0,1] -> z0 [B,C,h,w], padding H, W up to the codec's grid first."""
        return self.codec.encode(_pad_to_multiple(image, self.codec.downscale, is_pano), panorama=is_pano)

    def head_inputs(self, z0: torch.Tensor, is_pano: bool, image: torch.Tensor | None = None) -> dict:
        """What the head reads besides z0, as keyword arguments of ``ExposureHead.forward`` (empty for a head
        that reads z0 alone), all from the EV-0 frame: the input image (image-to-HDR, exact 8-bit levels) or,
        with no image, the decoded z0 (text-to-HDR).
        - ``unseen`` (``HeadConfig.unseen_maps``): its clipped / black fractions per latent cell [B, 2, h, w]. A
          decoded frame's clipped regions decode a little under 1: its clipped level is ``DECODED_CLIPPED_LEVEL``.
        - ``frame`` (``HeadConfig.frame_channels``): the frame itself [B, 3, h d, w d], display [0, 1]."""
        config = self.head.config
        if not (config.unseen_maps or config.frame_channels):
            return {}
        from latenthdr.models.head import side_inputs

        d = self.codec.downscale
        if image is not None:
            y0, clipped_level = _pad_to_multiple(image, d, is_pano), None  # exact 8-bit levels
        else:
            y0 = self.codec.decode(z0, chunk_size=self.decode_chunk_size, panorama=is_pano)
            clipped_level = DECODED_CLIPPED_LEVEL
        return side_inputs(y0, d, unseen_maps=config.unseen_maps, read_frame=config.frame_channels > 0,
                           clipped_level=clipped_level)

    def expose(self, z0: torch.Tensor, evs: Sequence[float], is_pano: bool, inputs: dict | None = None,
               callback: Progress | None = None) -> torch.Tensor:
        """z0 [B,C,h,w] -> z [B,K,C,h,w]: every EV in one batched head pass (``head_precision``), or, for large
        images, in passes of as many EVs as ``HEAD_CELLS`` allows, which bounds the head's activations; ``inputs``:
        what the head reads besides z0 (:meth:`head_inputs`). callback: ("head", passes done, passes)."""
        chunk = max(1, HEAD_CELLS // max(1, z0.shape[0] * z0.shape[-2] * z0.shape[-1]))
        evs = list(evs)
        starts = range(0, len(evs), chunk)
        _report(callback, "head", 0, len(starts))
        passes = []
        with torch.autocast(z0.device.type, dtype=torch.bfloat16, enabled=self.head_bfloat16):
            for i in starts:
                passes.append(self.head(z0, torch.tensor(evs[i:i + chunk], dtype=z0.dtype, device=z0.device),
                                        panorama=is_pano, **(inputs or {})))
                _report(callback, "head", len(passes), len(starts))
            return torch.cat(passes, dim=1)

    def decode(self, z: torch.Tensor, is_pano: bool, size, callback: Progress | None = None) -> torch.Tensor:
        """z [B,K,C,h,w] -> y [B,K,3,H,W] display [0,1], decoded ``decode_chunk_size`` frames at a time (as
        ``codecs.decode_bracket``), cropped to the input size. callback: ("decode", chunks done, chunks)."""
        chunks = z.flatten(0, 1).split(self.decode_chunk_size)
        _report(callback, "decode", 0, len(chunks))
        frames = []
        for chunk in chunks:
            frames.append(self.codec.decode(chunk, chunk_size=self.decode_chunk_size, panorama=is_pano))
            _report(callback, "decode", len(frames), len(chunks))
        y = torch.cat(frames).unflatten(0, z.shape[:2])
        return y[..., : size[0], : size[1]].clamp(0, 1)

    def merged_frames(self, evs: Sequence[float]) -> list[int]:
        """Indices of the frames the input-preserving merge reads (``merge.merged_frames``: up to EV 0 by
        default); with selective decoding the head predicts only these."""
        return merge.merged_frames(evs, self.merge_options.get("knee_low", 0.0), self.merge_options.get("max_ev"))

    def decode_and_merge(self, z: torch.Tensor, evs: Sequence[float], is_pano: bool, image: torch.Tensor,
                         timings: dict | None = None, callback: Progress | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, list[float], list[float]]:
        """Selective decoding streamed into the input-preserving merge: (hdr [B, 3, H, W], decoded [B, H, W] bool,
        plow, phigh), with no whole bracket in memory.

        z: [B, K, C, h, w], the frames the merge reads (EVs ``evs``, :meth:`merged_frames`). Per image, the
        ``decode_tile`` tiles of :meth:`selective_plan` (the pixels with a clipped channel, and about one tile in
        ``CALIBRATION_TILE_EVERY`` for the calibration gains) are decoded in windows with the codec's exact margin
        (``codecs.WindowDecoder``), windows of at most ``WINDOW_CELLS`` cells (or more where the codec's
        ``tail_cell_frames`` allows), as many frames at a time as that allows, and kept as tiles; where the windows,
        margins included, would hold more cells than the frame, the frame is decoded in bands of whole rows
        instead (the same tiles are kept). The gains come from the same subsample of those tiles as
        ``merge.calibration_gains`` takes, and each tile is merged apart (``merge.merge_region_with_input``: every
        step is per pixel). Every other pixel is the linearised input, as the merge leaves it. So the HDR is the
        merge of whole decoded frames (up to float rounding in the windows), and memory holds the wanted tiles of
        the merged frames, not the bracket. plow / phigh: the fractions of each image's pixels whose predicted
        radiance needed the merge's dark / bright fallback. Adds "decode" and "merge" seconds to ``timings``.
        callback: image by image, ("decode", windows done, the image's windows), then ("merge", images done, B)."""
        timings = {} if timings is None else timings
        hdrs, masks, plows, phighs = [], [], [], []
        for z_b, image_b in zip(z, image):
            with _timed(timings, "decode"):
                tiles, decoded = self._decode_tiles(z_b, evs, is_pano, image_b, callback)
            with _timed(timings, "merge"):
                if not hdrs:
                    _report(callback, "merge", 0, len(image))
                hdr, plow, phigh = self._merge_tiles(tiles, decoded, evs, is_pano, image_b)
            hdrs.append(hdr), masks.append(decoded), plows.append(plow), phighs.append(phigh)
            _report(callback, "merge", len(hdrs), len(image))
        return torch.stack(hdrs).to(z.device), torch.stack(masks).to(z.device), plows, phighs

    def _decode_tiles(self, z: torch.Tensor, evs: Sequence[float], is_pano: bool, image: torch.Tensor,
                      callback: Progress | None = None) -> tuple[dict, torch.Tensor]:
        """One image's wanted tiles: ({(row, col) of the tile: [K, 3, th, tw] display frames}, decoded [H, W])."""
        from latenthdr.models.codecs import WindowDecoder, tile_runs, window_cells

        d, tile, (height, width) = self.codec.downscale, self.decode_tile, image.shape[-2:]
        margin = self.codec.tail_radius if self.decode_margin is None else self.decode_margin
        cells, _ = self.selective_plan(image, evs, is_pano)
        h, w = cells.shape
        wanted = F.max_pool2d(cells[None, None].float(), tile, ceil_mode=True)[0, 0] > 0  # [tile rows, tile cols]
        windows = tile_runs(cells, tile)
        if window_cells(windows, margin, h, w, is_pano) >= h * w:  # whole rows of tiles cost less
            rows = wanted.any(dim=1).nonzero().flatten().tolist()
            windows = [(r * tile, min((r + 1) * tile, h), 0, w) for r in rows]
        decoder = WindowDecoder(self.codec, z, panorama=is_pano, margin=self.decode_margin)
        tiles: dict[tuple[int, int], torch.Tensor] = {}
        budget = self.codec.tail_cell_frames  # cells x frames per tail call: what bounds the decoder's memory
        pieces = _bounded_windows(_merge_rows(windows), tile, max(budget // self.decode_chunk_size, WINDOW_CELLS))
        _report(callback, "decode", 0, len(pieces))
        for done, (r0, r1, c0, c1) in enumerate(pieces, 1):
            step = max(1, min(self.decode_chunk_size, budget // ((r1 - r0) * (c1 - c0))))
            patch = torch.cat([decoder.decode(list(range(k, min(k + step, len(evs)))), r0, r1, c0, c1)
                               for k in range(0, len(evs), step)])
            for i in range(r0 // tile, -(-r1 // tile)):
                for j in range(c0 // tile, -(-c1 // tile)):
                    if wanted[i, j] and (i, j) not in tiles:
                        y0, x0 = (i * tile - r0) * d, (j * tile - c0) * d
                        th, tw = min(tile * d, height - i * tile * d), min(tile * d, width - j * tile * d)
                        tiles[i, j] = patch[..., y0:y0 + th, x0:x0 + tw].clone()
            _report(callback, "decode", done, len(pieces))
        decoded = wanted.repeat_interleave(tile * d, 0).repeat_interleave(tile * d, 1)[:height, :width]
        return tiles, decoded

    def _merge_tiles(self, tiles: dict, decoded: torch.Tensor, evs: Sequence[float], is_pano: bool,
                     image: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """One image's HDR [3, H, W] from its decoded tiles (:meth:`_decode_tiles`), and its plow, phigh."""
        size = self.decode_tile * self.codec.downscale
        options = self.merge_options
        stride = merge.calibration_stride(int(decoded.sum()))
        sample = torch.ones(len(evs), 3, *image[0, ::stride, ::stride].shape)
        for (i, j), frames in tiles.items():
            y0, x0 = i * size, j * size
            a, b = -(-y0 // stride), -(-x0 // stride)  # the first sample row and column in the tile
            part = frames[..., a * stride - y0::stride, b * stride - x0::stride]
            sample[..., a:a + part.shape[-2], b:b + part.shape[-1]] = part
        gains = merge.sampled_calibration_gains(image[..., ::stride, ::stride], sample, evs, self.curve,
                                                mask=decoded[::stride, ::stride])
        rim_bound = options.get("rim_bound")
        rim = None if rim_bound is None else rim_bound * merge.rim_excess_bound(image, self.curve, is_pano)
        knees = (options.get("knee_low", 0.0), options.get("knee_high", 0.1))
        hdr = response.decode(image.float(), self.curve)  # what the merge keeps outside the decoded tiles
        plow = phigh = 0.0
        for (i, j), frames in tiles.items():
            rows, cols = slice(i * size, i * size + frames.shape[-2]), slice(j * size, j * size + frames.shape[-1])
            part = merge.merge_region_with_input(image[:, rows, cols], frames, evs, gains, self.curve,
                                                 knees=knees, shrink=options.get("highlight_shrink", 1.0),
                                                 rim=None if rim is None else rim[rows, cols])
            hdr[:, rows, cols] = part.hdr
            pixels = frames.shape[-2] * frames.shape[-1]
            plow, phigh = plow + part.plow * pixels, phigh + part.phigh * pixels
        return hdr, plow / decoded.numel(), phigh / decoded.numel()

    def selective_plan(self, image: torch.Tensor, evs: Sequence[float], is_pano: bool) -> tuple[torch.Tensor, list[int]]:
        """What :meth:`decode_and_merge` decodes for one image [3, H, W]: (latent cells [h, w] bool, frame indices).
        The cells hold the pixels ``merge.input_merge_reads`` names and, every ``CALIBRATION_TILE_EVERY`` tiles,
        a calibration tile; whole tiles of ``decode_tile`` cells are decoded around them."""
        d = self.codec.downscale
        needed, frames = merge.input_merge_reads(image, evs, knee_low=self.merge_options.get("knee_low", 0.0),
                                                 max_ev=self.merge_options.get("max_ev"))
        cells = F.max_pool2d(_pad_to_multiple(needed[None, None].float(), d, is_pano), d)[0, 0] > 0
        if CALIBRATION_TILE_EVERY:
            cells |= _calibration_tiles(cells.shape, self.decode_tile)
        return cells, frames

    def merge(self, y: torch.Tensor, evs: Sequence[float], image: torch.Tensor | None,
              panorama: bool = False, decoded: torch.Tensor | None = None) -> merge.MergeResult:
        """METHOD.md Eq. 9 over the decoded bracket, or the input-preserving variant when ``image`` is given
        (``merge_options``; ``panorama``: clipped regions wrap at +-180 degrees; ``decoded``: where the frames
        were decoded, from :meth:`decode_and_merge`)."""
        if image is None:
            return merge.merge_bracket(y, evs, curve=self.curve)
        if decoded is None and self.codec.tail_radius is not None:  # whole frames: the selective decode's pixels
            decoded = torch.stack([self.decoded_pixels(i, evs, panorama) for i in image.reshape(-1, *image.shape[-3:])])
            decoded = decoded.reshape(image.shape[:-3] + image.shape[-2:])
        return merge.merge_with_input(image, y, evs, curve=self.curve, panorama=panorama, decoded=decoded,
                                      **self.merge_options)

    def decoded_pixels(self, image: torch.Tensor, evs: Sequence[float], is_pano: bool) -> torch.Tensor:
        """[H, W] bool: the pixels of one image [3, H, W] that the merge reads after :meth:`decode_and_merge`: the
        ``decode_tile`` tiles holding a cell of :meth:`selective_plan` (the windows that decode them may cover
        more, or the whole frame; the merge does not depend on how they are grouped)."""
        cells, _ = self.selective_plan(image, evs, is_pano)
        decoded = _wanted_tiles(cells, self.decode_tile)
        d = self.codec.downscale
        return decoded.repeat_interleave(d, 0).repeat_interleave(d, 1)[: image.shape[-2], : image.shape[-1]]


# A decoded EV-0 frame's clipped level for unseen maps: the level at which decode(encode(frame)) of the embedded
# codec gives the 8-bit frame's clipped map best, on the training panoramas (mean |difference| 0.0133 against
# 0.0183 at the 8-bit level; benchmarks/experiments/decoded_unseen_levels.py). Its black level stays the 8-bit one.
DECODED_CLIPPED_LEVEL = 0.98
DEFAULT_PANORAMA_SIZE = (256, 512)  # (height, width) pixels of text-to-HDR panoramas
DEFAULT_PERSPECTIVE_SIZE = (288, 384)  # 4:3


# Peak resident memory of `convert` on a CPU: bytes = base + pixels x (per_pixel + frames x per pixel-frame), fitted
# to whole-process runs at 0.5 and 2 megapixels with 13 EVs (benchmarks/memory.py, docs/reliability.md). The
# embedded codec's memory is all per frame (three float32 copies of the bracket); TAEF2 adds its encoder's and
# decoder's activations, which grow with the image and not with the frames.
BRACKET_BYTES_PER_PIXEL_FRAME = 36.8
MEMORY_MODELS = {"latenthdr-tiny-v1": (0.402e9, 0.0), "taef2": (1.073e9, 1078.0)}
# The same with selective decoding merged tile by tile (the default): bytes = base + pixels x per_pixel, fitted on
# 2026-12-02 to whole-process runs at 1, 4 and 12 megapixels, 13 EVs (benchmarks/memory.py, docs/image-to-hdr.md;
# embedded 0.56-0.64 / 0.98-1.05 / 2.15 GB, TAEF2 2.59 / 3.50 / 3.31 GB), erring high. The base holds the models and
# the decoder's bounded windows (``codecs.LatentCodec.tail_cell_frames``: TAEF2's are most of its memory, whatever the
# size); per pixel: the input's float copies, the HDR, the previews.
STREAMED_MEMORY_MODELS = {"latenthdr-tiny-v1": (0.46e9, 141.0), "taef2": (3.3e9, 25.0)}

HEAD_PRECISIONS = ("auto", "float32", "bfloat16")
# Progress callbacks: ``callback(stage, done, total)``, with done 0 when a stage starts, then after each of its units.
# Stages and their units: "encode" (1), "diffusion" (text-to-HDR: one per diffusion run), "head" (head passes),
# "decode" (chunks of frames, or the windows of selective decoding), "merge" (1, or one per image when selective).
Progress = Callable[[str, int, int], None]
PROGRESS_STAGES = ("encode", "diffusion", "head", "decode", "merge")
MERGE_OPTIONS = ("highlight_shrink", "rim_bound", "knee_high", "knee_low", "max_ev")
# Our best on the val panoramas and photographs (docs/image-to-hdr.md, "Where the head is unsure"): half the
# predicted excess over the clip level, in stops. It took the worst val image from -3.8 dB to -0.3 dB against its
# linearised input and the pooled gain from +0.54 to +0.72 dB; the rim bound added nothing on top of it.
# Frames above EV 0 are not merged (``merge.SELECTIVE_MAX_EV``): +0.07 dB pooled on val, and fewer frames to decode.
DEFAULT_MERGE_OPTIONS = {"highlight_shrink": 0.5, "max_ev": merge.SELECTIVE_MAX_EV}


def check_merge_options(options: dict) -> dict:
    """``merge_options`` with unknown names or bad highlight values refused before any work."""
    unknown = sorted(set(options) - set(MERGE_OPTIONS))
    if unknown:
        raise InputError("merge_options", f"unknown {', '.join(unknown)}; accepted: {', '.join(MERGE_OPTIONS)}")
    merge.check_highlight_options(**{k: v for k, v in options.items() if k in ("highlight_shrink", "rim_bound")})
    return dict(options)


def _resolve_head_precision(precision: str, device: torch.device) -> bool:
    """Whether the head runs under bfloat16 autocast (see LatentHDRPipeline)."""
    if precision not in HEAD_PRECISIONS:
        raise InputError("head_precision", f"got {precision!r}; accepted: {', '.join(HEAD_PRECISIONS)}")
    if precision != "auto":
        return precision == "bfloat16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPUs: float32. Under bfloat16 autocast on this AVX512-BF16/AMX CPU, one narrow input gave HDRs 4-22% apart
    # from run to run (and sometimes NaN), in the reliability probe; float32 gives the same bytes every time, and
    # the head is a small share of a conversion's time.
    return False


def output_size(height, width, panorama: bool) -> tuple[int, int]:
    """Defaults: panoramas 2:1 from the width (512x256), perspective 4:3 (384x288); sizes are checked by the
    scene source, which knows its grid."""
    if height is None and width is None:
        return DEFAULT_PANORAMA_SIZE if panorama else DEFAULT_PERSPECTIVE_SIZE
    if height is None:
        height = width // 2 if panorama else width * 3 // 4
    if width is None:
        width = 2 * height if panorama else height * 4 // 3
    return int(height), int(width)


def _check_image(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise InputError("image", f"expected a torch tensor [B,3,H,W], got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 3:
        raise InputError("image", f"expected [B,3,H,W] or [3,H,W], got {tuple(image.shape)}")
    if image.shape[-1] < 8 or image.shape[-2] < 8:
        raise InputError("image", f"image is {image.shape[-1]}x{image.shape[-2]}; at least 8x8 is accepted")
    image = image.float()
    if not torch.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError("image", "values must be finite display-encoded values in [0, 1]")
    return image


def _resolve_panorama(panorama, size) -> bool:
    if panorama == "auto":
        return equirect.is_equirectangular(int(size[0]), int(size[1]))
    if panorama in ("on", True):
        return True
    if panorama in ("off", False):
        return False
    raise InputError("panorama", f"got {panorama!r}; accepted: auto, on, off")


def _pad_to_multiple(image: torch.Tensor, multiple: int, wrap: bool) -> torch.Tensor:
    """Pad H and W at the bottom/right to a multiple of the codec grid (circular in W for panoramas)."""
    pad_h, pad_w = (-image.shape[-2]) % multiple, (-image.shape[-1]) % multiple
    if pad_w:
        image = F.pad(image, (0, pad_w, 0, 0), mode="circular" if wrap else "replicate")
    if pad_h:
        image = F.pad(image, (0, 0, 0, pad_h), mode="replicate")
    return image


# The head runs on at most this many latent cells times EVs in one pass (a 512 x 256 panorama's 13 EVs are 27 k;
# a 12-megapixel photo's one EV is 188 k): its U-Net activations, not the image, then set its memory.
HEAD_CELLS = 1 << 18
CALIBRATION_TILE_EVERY = 8  # selective decoding: one tile in this many is decoded for the calibration gains
# Selective decoding cuts its windows to at most this many latent cells (2^14: 1 megapixel of output), or to the
# codec's ``tail_cell_frames`` over the decode chunk where that is more, and runs as many frames of a window at a time
# as ``tail_cell_frames`` allows: what bounds the decoder's memory, whatever the image size.
WINDOW_CELLS = 1 << 14


def _merge_rows(windows: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Windows of whole rows (c0, c1 the full width) merged where one ends where the next starts: fewer margins."""
    merged: list[list[int]] = []
    for r0, r1, c0, c1 in windows:
        if merged and merged[-1][1] == r0 and merged[-1][2:] == [c0, c1]:
            merged[-1][1] = r1
        else:
            merged.append([r0, r1, c0, c1])
    return [tuple(m) for m in merged]


def _bounded_windows(windows, tile: int, max_cells: int) -> list[tuple[int, int, int, int]]:
    """Each window cut at tile borders into pieces of at most ``max_cells`` cells (a piece is at least one tile),
    bands of whole tile rows first, then runs of tiles within a row where one tile row is too wide."""
    pieces = []
    for r0, r1, c0, c1 in windows:
        step = min(c1 - c0, max(tile, (max_cells // tile) // tile * tile))  # columns of a piece
        rows = max(tile, (max_cells // step) // tile * tile)
        for a in range(r0, r1, rows):
            for b in range(c0, c1, step):
                pieces.append((a, min(a + rows, r1), b, min(b + step, c1)))
    return pieces


def _wanted_tiles(cells: torch.Tensor, tile: int) -> torch.Tensor:
    """[h, w] bool: the cells of every ``tile`` x ``tile`` tile that holds a True cell of ``cells``."""
    h, w = cells.shape
    pooled = F.max_pool2d(cells[None, None].float(), tile, ceil_mode=True)[0, 0] > 0
    return pooled.repeat_interleave(tile, 0).repeat_interleave(tile, 1)[:h, :w]


def _calibration_tiles(shape: tuple[int, int], tile: int, every: int = CALIBRATION_TILE_EVERY) -> torch.Tensor:
    """[h, w] bool latent cells of a regular, staggered sample of about one tile in ``every`` (at least one)."""
    rows, cols = -(-shape[0] // tile), -(-shape[1] // tile)
    i, j = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    picked = (j + i * (every // 2 + 1)) % every == 0  # staggered rows: no column of tiles is all picked
    if not picked.any():
        picked[rows // 2, cols // 2] = True
    cells = picked.repeat_interleave(tile, 0).repeat_interleave(tile, 1)
    return cells[: shape[0], : shape[1]]


def _per_image(value) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.flatten()]
    return [float(value)]


def _report(callback: Progress | None, stage: str, done: int, total: int) -> None:
    if callback is not None:
        callback(stage, done, total)


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

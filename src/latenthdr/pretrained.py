"""Pipeline folders: what ``LatentHDRPipeline.save_pretrained`` writes and ``LatentHDRPipeline.from_pretrained`` reads.

A pipeline folder holds ``latenthdr_pipeline.json`` (:class:`PipelineConfig`) and the weight files it names::

    {"format": "latenthdr-pipeline", "format_version": 1, "space": "latenthdr-tiny-v1",
     "codec": {"kind": "embedded", "file": "codec.safetensors", "sha256": "..."},
     "head": {"kind": "head", "file": "head.safetensors", "sha256": "..."},
     "scene": null,
     "settings": {"curve": "gamma2.2", "merge_options": {"highlight_shrink": 0.5, "max_ev": 0.0},
                  "head_precision": "auto", "decode_chunk_size": 4, "decode_tile": 16, "decode_margin": null}}

Each component (:class:`Component`) is either a safetensors file inside the folder (copied there by save_pretrained,
its sha256 checked by from_pretrained) or a *spec* of weights that live elsewhere, which the folder names and does
not copy:
- codec: "embedded" (our codec, ``models/tinycodec.py``: a file); "taef2" (a ``models.codecs.load_codec`` spec,
  "taef2" or "taef2:DIR": TAEF2's weights are distributed by their author, madebyollin/taesd, under the MIT licence,
  outside this package, so the folder records where they are found instead of carrying a copy); "diffusers" (a
  diffusers VAE directory or hub id); "backbone" (the VAE of the scene backbone).
- head: a file ("head").
- scene: null (image-to-HDR only); "prior" (our embedded text-to-latent prior: a file, ``options.scheduler``);
  "backbone" (a ``models.backbones.load_backbone`` name, pipeline directory or hub id, with its JSON ``options``).

The package's own ``weights/`` folder is such a folder: the embedded default of ``from_pretrained()``. A hub id
(``owner/name``) is fetched with huggingface_hub's ``snapshot_download`` into the Hugging Face cache: the config
first, then the files it names, at the same commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from latenthdr.errors import InputError, LatentHDRError

CONFIG_NAME = "latenthdr_pipeline.json"
FORMAT = "latenthdr-pipeline"
FORMAT_VERSION = 1
CODEC_KINDS = ("embedded", "taef2", "diffusers", "backbone")
SCENE_KINDS = ("prior", "backbone")
PRIOR_OPTIONS = ("scheduler",)
FILE_NAMES = {"codec": "codec.safetensors", "head": "head.safetensors", "scene": "prior.safetensors"}  # save's names
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # owner/name, as codecs.load_codec reads hub ids
SHA256 = re.compile(r"[0-9a-f]{64}")
# Optional dependencies that loading a pipeline can need, by top-level module, with the extra that installs them.
EXTRAS = {"diffusers": "models", "transformers": "models", "accelerate": "models", "huggingface_hub": "models"}
NOT_COPIED = {
    "taef2": "TAEF2's weights (MIT, madebyollin/taesd) are not copied: they are found from the spec, as "
             "models.taef2.find_taef2_weights describes",
    "diffusers": "the diffusers VAE is not copied: it is loaded from the directory or hub id of the spec",
    "backbone": "the codec is the scene backbone's VAE (not copied)",
}


class MissingExtraError(LatentHDRError, ImportError):
    """An optional dependency is not installed (or cannot be imported); the message names the extra to install."""


@dataclass(frozen=True)
class Component:
    """One component of a pipeline folder: a weight ``file`` in it with its ``sha256``, or a ``spec`` loaded from
    elsewhere (not copied; ``note`` says why). In a pipeline's ``origins`` (where its components came from),
    ``file`` is the absolute path of the source file and ``sha256`` is unset."""

    kind: str
    file: str | None = None
    sha256: str | None = None
    spec: str | None = None
    options: dict = field(default_factory=dict)
    note: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k == "kind" or v not in (None, {})}


@dataclass(frozen=True)
class Settings:
    """The pipeline's constructor settings that travel with its weights (``LatentHDRPipeline``'s arguments)."""

    curve: str = "gamma2.2"
    merge_options: dict = field(default_factory=dict)
    head_precision: str = "auto"
    decode_chunk_size: int = 4
    decode_tile: int = 16
    decode_margin: int | None = None

    def __post_init__(self):
        from latenthdr import pipeline, response

        response.check_curve(self.curve)
        if not isinstance(self.merge_options, dict):
            raise InputError("merge_options", f"got {self.merge_options!r:.100}; accepted: an object of "
                                              f"{', '.join(pipeline.MERGE_OPTIONS)}")
        pipeline.check_merge_options(self.merge_options)
        if self.head_precision not in pipeline.HEAD_PRECISIONS:
            raise InputError("head_precision", f"got {self.head_precision!r}; accepted: "
                                               f"{', '.join(pipeline.HEAD_PRECISIONS)}")
        for name in ("decode_chunk_size", "decode_tile"):
            _check_int(name, getattr(self, name), 1)
        if self.decode_margin is not None:
            _check_int("decode_margin", self.decode_margin, 0)


@dataclass(frozen=True)
class PipelineConfig:
    """``latenthdr_pipeline.json``: the latent space, the components and the settings of one pipeline."""

    space: str
    codec: Component
    head: Component
    scene: Component | None = None
    settings: Settings = field(default_factory=Settings)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return {"format": self.format, "format_version": self.format_version, "space": self.space,
                "codec": self.codec.to_dict(), "head": self.head.to_dict(),
                "scene": None if self.scene is None else self.scene.to_dict(),
                "settings": dataclasses.asdict(self.settings)}

    def files(self) -> list[Component]:
        return [c for c in (self.codec, self.head, self.scene) if c is not None and c.file is not None]


def package_folder() -> Path:
    """The package's own pipeline folder (the embedded default): ``weights/``, read when called."""
    from latenthdr.models import registry

    return registry.WEIGHTS_DIR


# --- reading ----------------------------------------------------------------------------------------------------
def read_config(path: Path) -> PipelineConfig:
    """The config of a pipeline folder's ``latenthdr_pipeline.json``; one InputError naming the file when it is
    missing, not JSON, of another format or version, or has unknown keys or values out of range."""
    if not path.is_file():
        raise InputError("pretrained", f"{path}: no such file; accepted: a folder written by "
                                       "LatentHDRPipeline.save_pretrained, or a hub id (owner/name) of one")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # unreadable, not UTF-8 or not JSON
        raise InputError("pretrained", f"{path}: cannot be read ({str(error)[:200]}); accepted: a "
                                       f"{CONFIG_NAME} written by save_pretrained") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError("pretrained", f"{path}: format {found!r:.100}; accepted: {FORMAT!r} (a folder written by "
                                       "LatentHDRPipeline.save_pretrained)")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        newer = type(version) is int and version > FORMAT_VERSION
        remedy = "upgrade latenthdr" if newer else "save the pipeline again"
        raise InputError("pretrained", f"{path}: format version {version!r:.40} is "
                                       f"{'newer than' if newer else 'not'} what this latenthdr reads (version "
                                       f"{FORMAT_VERSION}); {remedy}")
    try:
        return _config_from_dict(data)
    except InputError as error:
        raise InputError("pretrained", f"{path}: {error}") from None


def _config_from_dict(data: dict) -> PipelineConfig:
    from latenthdr.models.weights_file import config_from_dict

    raw = config_from_dict(PipelineConfig, data, "config")  # unknown and missing keys, as every config
    if not isinstance(raw.space, str) or not raw.space:
        raise InputError("space", f"got {raw.space!r:.100}; accepted: a latent-space id")
    codec = _component(raw.codec, "codec", CODEC_KINDS, {"embedded"})
    head = _component(raw.head, "head", ("head",), {"head"})
    scene = None if raw.scene is None else _component(raw.scene, "scene", SCENE_KINDS, {"prior"})
    if (codec.kind == "backbone") != (scene is not None and scene.kind == "backbone"):
        raise InputError("codec", "kind 'backbone' (the backbone's VAE) goes with, and only with, a scene of kind "
                                  "'backbone'")
    if scene is not None and scene.kind == "prior" and set(scene.options) - set(PRIOR_OPTIONS):
        raise InputError("scene", f"unknown options {sorted(set(scene.options) - set(PRIOR_OPTIONS))}; accepted: "
                                  f"{', '.join(PRIOR_OPTIONS)}")
    settings = raw.settings if isinstance(raw.settings, Settings) else config_from_dict(Settings, raw.settings,
                                                                                        "settings")
    return PipelineConfig(raw.space, codec, head, scene, settings)


def _component(data, role: str, kinds: tuple, file_kinds: set) -> Component:
    """A component of the config, checked: a known kind, a plain file name and sha256 for a file kind, a spec
    otherwise."""
    from latenthdr.models.weights_file import config_from_dict

    c = config_from_dict(Component, data, role)
    if c.kind not in kinds:
        raise InputError(role, f"kind {c.kind!r:.100}; accepted: {', '.join(kinds)}")
    if not isinstance(c.options, dict):
        raise InputError(role, f"options {c.options!r:.100}; accepted: an object")
    if c.kind in file_kinds:
        if not _plain_name(c.file) or not isinstance(c.sha256, str) or not SHA256.fullmatch(c.sha256):
            raise InputError(role, f"file {c.file!r:.100}, sha256 {c.sha256!r:.100}; accepted: the name of a file "
                                   "in the folder and its sha256 (64 lowercase hex digits)")
    elif c.file is not None or c.sha256 is not None:
        raise InputError(role, f"kind {c.kind!r} names no file of the folder; got file {c.file!r:.100}")
    elif c.kind != "backbone" or role == "scene":
        if not isinstance(c.spec, str) or not c.spec:
            raise InputError(role, f"kind {c.kind!r} needs a spec (where its weights are); got {c.spec!r:.100}")
    return c


def _plain_name(name) -> bool:
    """A file name inside the folder: no directories, no '..' (a config may be hostile)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name
            and not any(c in name for c in "/\\\x00"))


def verify(folder: Path, config: PipelineConfig) -> None:
    """Every file the config names is in ``folder`` with the config's sha256; else one InputError naming it."""
    from latenthdr.models.registry import sha256_of

    for component in config.files():
        path = folder / component.file
        if not path.is_file():
            raise InputError("pretrained", f"{path}: missing; {CONFIG_NAME} lists it as the {_role(config, component)}"
                                           " file (copy the whole folder, or save the pipeline again)")
        digest = sha256_of(path)
        if digest != component.sha256:
            raise InputError("pretrained", f"{path}: sha256 {digest[:16]}... differs from {CONFIG_NAME}'s "
                                           f"{component.sha256[:16]}...; the file is damaged or was replaced "
                                           "after save_pretrained")


def _role(config: PipelineConfig, component: Component) -> str:
    return next(r for r in ("codec", "head", "scene") if getattr(config, r) is component)


def resolve_folder(pretrained, *, revision: str | None = None, local_files_only: bool = False) -> Path:
    """A local folder as it is, or a hub id's snapshot in the Hugging Face cache (downloaded when missing)."""
    local = Path(os.fspath(pretrained)).expanduser()
    if local.is_dir():
        return local
    if local.exists() or not HUB_ID.fullmatch(str(pretrained)):
        raise InputError("pretrained", f"{pretrained!r:.200} is not a folder; accepted: a folder written by "
                                       "LatentHDRPipeline.save_pretrained, or a hub id (owner/name) of one (a codec "
                                       "spec goes in codec=, a backbone in scene=)")
    return download(str(pretrained), revision=revision, local_files_only=local_files_only)


def download(repo_id: str, *, revision: str | None = None, local_files_only: bool = False) -> Path:
    """The snapshot folder of a hub pipeline repo: ``latenthdr_pipeline.json`` first, then the files it names, at
    that commit (huggingface_hub's ``snapshot_download``, the local cache first). Needs the models extra."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise _missing_extra(error, f"loading the hub pipeline {repo_id!r}") from None
    options = {"repo_type": "model", "library_name": "latenthdr", "local_files_only": local_files_only}
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME], **options))
        if not (folder / CONFIG_NAME).is_file():
            raise InputError("pretrained", f"the hub repo {repo_id!r} has no {CONFIG_NAME}; accepted: a repo of a "
                                           "folder written by LatentHDRPipeline.save_pretrained")
        config = read_config(folder / CONFIG_NAME)
        names = [CONFIG_NAME, *(c.file for c in config.files())]
        return Path(snapshot_download(repo_id, revision=folder.name, allow_patterns=names, **options))
    except InputError:
        raise
    except (OSError, ValueError) as error:  # huggingface_hub's HTTP, offline and validation errors
        detail = str(error).strip().partition("\n")[0].partition(". ")[0][:240]
        raise LatentHDRError(f"{repo_id!r} is no local folder, and fetching it from the Hugging Face hub failed "
                             f"({type(error).__name__}: {detail}); check the id and the network, or pass a local "
                             "folder") from None


# --- building ---------------------------------------------------------------------------------------------------
@dataclass
class Loaded:
    """What ``LatentHDRPipeline.from_pretrained`` builds the pipeline from."""

    codec: object
    head: object
    scene_source: object | None
    settings: dict
    origins: dict


def load(pretrained=None, *, codec: str | None = None, head: str | None = None, device="cpu",
         scene: str | None = None, scene_options: dict | None = None, revision: str | None = None,
         local_files_only: bool = False) -> Loaded:
    """The components of ``LatentHDRPipeline.from_pretrained``: a pipeline folder (or hub id), whose components
    ``codec`` / ``head`` / ``scene`` replace when given; with no folder, those keywords alone (None: the embedded
    default, itself the package's pipeline folder)."""
    options = dict(scene_options or {})
    if pretrained is None and codec is None and head is None and scene is None \
            and (package_folder() / CONFIG_NAME).is_file():
        pretrained = package_folder()
    if pretrained is None:
        scene_c = _scene_component(scene, options)
        backbone = codec is None and scene_c is not None and scene_c.kind == "backbone"
        return _build(Component("backbone") if backbone else _codec_component(codec), head, scene_c, device, {})
    folder = resolve_folder(pretrained, revision=revision, local_files_only=local_files_only)
    config = read_config(folder / CONFIG_NAME)
    verify(folder, config)
    placed = {role: _placed(getattr(config, role), folder) for role in ("codec", "head", "scene")}
    if scene is not None:  # another scene source: a backbone brings its VAE, a prior needs a codec of its own
        placed["scene"] = _scene_component(scene, options)
        if placed["scene"].kind == "backbone":
            placed["codec"] = Component("backbone")
        elif placed["codec"].kind == "backbone":
            placed["codec"] = _codec_component(None)
    elif options and placed["scene"] is not None:
        placed["scene"] = dataclasses.replace(placed["scene"], options={**placed["scene"].options, **options})
    if codec is not None:
        placed["codec"] = _codec_component(codec)
    head_file = head if head is not None else placed["head"].file
    loaded = _build(placed["codec"], head_file, placed["scene"], device, dataclasses.asdict(config.settings))
    if codec is None and scene is None and loaded.codec.space != config.space:  # a spec now names another VAE
        raise InputError("pretrained", f"{folder / CONFIG_NAME}: saved for latent space {config.space!r}; its codec "
                                       f"{placed['codec'].spec or placed['codec'].kind!r} now gives "
                                       f"{loaded.codec.space!r}")
    return loaded


def _placed(component: Component | None, folder: Path) -> Component | None:
    """A config component with its file as a path in ``folder``."""
    if component is None or component.file is None:
        return component
    return dataclasses.replace(component, file=str((folder / component.file).resolve()), sha256=None)


def _codec_component(spec: str | None) -> Component:
    """Where a codec spec (``registry.load_codec_for``; None: the default) loads from."""
    from latenthdr.models import registry

    spec = registry.default_codec_spec() if spec is None else str(spec)
    if spec == registry.EMBEDDED_CODEC:
        name = next((n for n, e in registry.manifest().items() if e["kind"] == "codec"), None)
        if name is None:
            raise InputError("codec", "the embedded codec is not shipped in this build; use --codec taef2 or a VAE")
        return Component("embedded", file=str(registry.shipped_file(name)))
    if spec == "taef2" or spec.startswith("taef2:"):
        path = spec.split(":", 1)[1] if ":" in spec else None
        return Component("taef2", spec="taef2" if path is None else f"taef2:{Path(path).expanduser().resolve()}")
    local = Path(spec).expanduser()
    if local.is_dir():
        from latenthdr.models.taef2 import ENCODER_FILE

        return Component("taef2" if (local / ENCODER_FILE).is_file() else "diffusers", spec=str(local.resolve()))
    return Component("diffusers", spec=spec)  # a hub id (load_codec_for refuses anything else)


def _scene_component(scene: str | None, options: dict) -> Component | None:
    """Where a ``scene=`` of from_pretrained loads from: "embedded" (the shipped prior), a prior file, a backbone."""
    if scene is None:
        return None
    if scene == "embedded":
        return Component("prior", options=options)  # the file: the shipped prior of the codec's space
    if str(scene).endswith(".safetensors"):
        return Component("prior", file=str(Path(scene).expanduser().resolve()), options=options)
    local = Path(str(scene)).expanduser()
    return Component("backbone", spec=str(local.resolve()) if local.is_dir() else str(scene), options=options)


def _build(codec_c: Component, head_file: str | None, scene_c: Component | None, device, settings: dict) -> Loaded:
    """Load the components (the same loaders as the keyword form always used) and record where each came from."""
    from latenthdr.models import registry

    source = None
    if scene_c is not None and scene_c.kind == "backbone":
        if codec_c.kind != "backbone":
            raise InputError("codec", "a backbone brings its own VAE; leave the codec unset with a backbone")
        from latenthdr.models import backbones

        with _needs_extra(f"the backbone {scene_c.spec!r}"):
            source = backbones.load_backbone(scene_c.spec, device=device, **_backbone_options(scene_c.options))
            codec_model = source.codec()
    else:
        with _needs_extra(f"the codec {codec_c.spec or codec_c.kind!r}"):
            codec_model = _load_codec(codec_c, device)
        if scene_c is not None:
            from latenthdr.models.prior import load_prior_for

            source = load_prior_for(codec_model, scene_c.file, device=device, **scene_c.options)
            scene_c = Component("prior", file=scene_c.file or str(_shipped_prior(codec_model.space)),
                                options={"scheduler": source.scheduler})
    head_model = registry.load_head_for(codec_model, head_file, device=device)
    if head_file is None:
        head_file = str(registry.shipped_file(registry.shipped_head_for(codec_model.space)))
    origins = {"codec": codec_c, "head": Component("head", file=str(Path(head_file).resolve())), "scene": scene_c}
    return Loaded(codec_model, head_model, source, settings, origins)


def _load_codec(component: Component, device):
    from latenthdr.models import registry

    if component.kind == "embedded":
        from latenthdr.models import tinycodec

        return tinycodec.load_embedded_codec(component.file, device=device)
    return registry.load_codec_for(component.spec, device=device)


def _shipped_prior(space: str) -> Path:
    from latenthdr.models import registry

    name = next(n for n, e in registry.manifest().items() if e["kind"] == "prior" and e["space"] == space)
    return registry.shipped_file(name)


def _backbone_options(options: dict) -> dict:
    """A backbone's saved options as ``load_backbone`` keywords: ``dtype`` from its name ("bfloat16")."""
    import torch

    options = dict(options)
    if isinstance(options.get("dtype"), str):
        name = options["dtype"].removeprefix("torch.")
        if name not in ("float16", "bfloat16", "float32"):
            raise InputError("scene_options", f"dtype {name!r}; accepted: float16, bfloat16, float32")
        options["dtype"] = getattr(torch, name)
    return options


@contextlib.contextmanager
def _needs_extra(what: str):
    """An optional dependency missing while loading ``what`` becomes one line naming the extra to install."""
    try:
        yield
    except MissingExtraError:
        raise
    except ImportError as error:
        missing = _missing_extra(error, f"loading {what}")
        if missing is None:
            raise
        raise missing from None


def _missing_extra(error: ImportError, what: str) -> MissingExtraError | None:
    """The one-line error for an optional dependency that is absent or broken, or None for any other import."""
    name = (error.name or "").split(".")[0]
    if name not in EXTRAS:  # diffusers' placeholder classes raise "X requires the transformers library ..."
        name = next((m for m in EXTRAS if f"{m} library" in str(error) or f"'{m}'" in str(error)), "")
    if name not in EXTRAS:
        return None
    extra = EXTRAS[name]
    if isinstance(error, ModuleNotFoundError) and error.name == name or f"{name} library" in str(error):
        return MissingExtraError(f"{what} needs {name}, which is not installed: pip install \"latenthdr[{extra}]\"")
    detail = str(error).partition("\n")[0][:200]
    return MissingExtraError(f"{what} needs {name}, which is installed but cannot be imported ({detail}); "
                             f"reinstall it: pip install -U \"latenthdr[{extra}]\"")


# --- writing ----------------------------------------------------------------------------------------------------
def save(pipe, directory, *, overwrite: bool = False) -> Path:
    """Write ``pipe`` as a pipeline folder (module docstring) whole or not at all (``io.output_set``): the weight
    files copied from where the pipeline loaded them while the weights in memory still equal them, else written
    from memory; components that live elsewhere as specs. Existing files of the folder are refused
    (OutputExistsError) unless ``overwrite``; then the files of the old config that the new one lacks go too.
    Not saved: a text-encoder object given to the prior (a loaded folder's prior uses the packaged MiniLM)."""
    from latenthdr import io
    from latenthdr.models.registry import sha256_of

    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError("save_directory", f"{folder}: is a file; expected a folder")
    parts = _parts(pipe)  # {role: (Component without sha256, write(path) or None)}, every check before any write
    names = {role: FILE_NAMES[role] for role, (_, write) in parts.items() if write is not None}
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        paths = {**{role: folder / name for role, name in names.items()}, "config": folder / CONFIG_NAME}
        with io.output_set(paths, overwrite=overwrite, argument="save_directory",
                           remove=_stale_files(folder, set(names.values())) if overwrite else ()) as temps:
            components = {}
            for role, (component, write) in parts.items():
                if write is not None:
                    write(temps[role])
                    component = dataclasses.replace(component, file=names[role], sha256=sha256_of(temps[role]))
                components[role] = component
            config = PipelineConfig(pipe.codec.space, components["codec"], components["head"], components.get("scene"),
                                    Settings(**pipe.settings()))
            temps["config"].write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing of ours was committed
        raise
    return folder


def _stale_files(folder: Path, keep: set[str]) -> tuple[Path, ...]:
    """Weight files of the folder's old config (when readable) that the new folder no longer has."""
    try:
        old = read_config(folder / CONFIG_NAME)
    except InputError:
        return ()
    return tuple(folder / c.file for c in old.files() if c.file not in keep and (folder / c.file).is_file())


def _parts(pipe) -> dict:
    """What save writes for each component: (its Component, a writer of its file or None for a spec)."""
    origins = getattr(pipe, "origins", None) or {}
    parts = {"codec": _codec_part(pipe.codec, origins.get("codec")),
             "head": _file_part(pipe.head, origins.get("head"), _save_head)}
    if pipe.scene_source is not None:
        parts["scene"] = _scene_part(pipe.scene_source, origins.get("scene"))
    return parts


def _codec_part(codec, origin: Component | None):
    from latenthdr.models.tinycodec import EmbeddedCodec, save_codec

    if isinstance(codec, EmbeddedCodec):
        return _file_part(codec.module, origin, save_codec, kind="embedded")
    if origin is not None and origin.kind in NOT_COPIED:
        return Component(origin.kind, spec=origin.spec, note=NOT_COPIED[origin.kind]), None
    raise InputError("codec", f"this {type(codec).__name__} was not loaded from a spec, and its weights are not "
                              "ours to copy; build the pipeline with LatentHDRPipeline.from_pretrained(codec=SPEC) "
                              "to save it")


def _scene_part(source, origin: Component | None):
    from latenthdr.models.prior import EmbeddedPrior, save_prior

    if isinstance(source, EmbeddedPrior):
        component, write = _file_part(source.model, origin, save_prior, kind="prior")
        return dataclasses.replace(component, options={"scheduler": source.scheduler}), write
    if origin is not None and origin.kind == "backbone":
        return Component("backbone", spec=origin.spec, options=_json_options(origin.options)), None
    raise InputError("scene_source", f"this {type(source).__name__} was not loaded by from_pretrained(scene=...); "
                                     "it cannot be saved")


def _file_part(module, origin: Component | None, save_file, kind: str = "head"):
    """Copy the origin file while ``module``'s weights still equal it (its dtype and metadata kept), else write the
    weights from memory with ``save_file(module, path)``."""
    if origin is not None and origin.file and _same_weights(module, Path(origin.file)):
        return Component(kind), lambda path: shutil.copyfile(origin.file, path)
    return Component(kind), lambda path: save_file(module, path)


def _save_head(head, path):
    from latenthdr.models.head import save_head

    save_head(head, path)


def _same_weights(module, path: Path) -> bool:
    """Whether ``module``'s state dict holds exactly the values of the safetensors file at ``path``."""
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        return False
    try:
        stored = load_file(str(path))
    except Exception:  # safetensors' own error types: a file changed since it was loaded; write from memory
        return False
    state = module.state_dict()
    return stored.keys() == state.keys() and all(
        stored[k].shape == state[k].shape and torch.equal(stored[k].double(), state[k].detach().cpu().double())
        for k in state)


def _json_options(options: dict) -> dict:
    """A backbone's options as JSON values (``dtype`` by name); InputError naming one that has none."""
    import torch

    out = {}
    for key, value in options.items():
        value = str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InputError("scene_options", f"{key}={value!r:.80} cannot be saved in {CONFIG_NAME}; accepted: JSON "
                                              "values (strings, numbers, booleans, null, lists, objects)") from None
        out[key] = value
    return out


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"got {value!r:.60}; accepted: an integer >= {minimum}")

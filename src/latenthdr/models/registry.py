"""The weights shipped inside the package (``latenthdr/weights``), verified against a sha256 manifest.

``weights/manifest.json``: ``{"files": {NAME: {"sha256", "bytes", "kind" ("head" | "codec" | "prior"),
"space" (latent-space id), "codec" (the codec spec the weights belong with), "description"}}}``.
A file whose bytes do not match its manifest entry is refused: a corrupted or swapped weight file must never run
silently. Each file is hashed once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

from latenthdr.errors import InputError, LatentHDRError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
EMBEDDED_CODEC = "embedded"
KINDS = ("head", "codec", "prior")
MANIFEST_ACCEPTED = ('{"files": {FILE_NAME: {"sha256": 64 hex digits, "bytes": int >= 0, "kind": "head" | "codec" | '
                     '"prior", "space": str, "codec": str, ...}}}')


def manifest() -> dict:
    """The manifest's ``files`` mapping (empty when nothing is shipped); LatentHDRError when it is malformed."""
    if not MANIFEST.is_file():
        return {}
    try:
        data = json.loads(MANIFEST.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # unreadable, not UTF-8 or not JSON
        raise LatentHDRError(f"{MANIFEST}: cannot be read ({str(error)[:200]}); reinstall latenthdr") from None
    files = data.get("files", {}) if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise LatentHDRError(f"{MANIFEST}: malformed (no \"files\" object); accepted: {MANIFEST_ACCEPTED}; "
                             "reinstall latenthdr")
    for name, entry in files.items():
        if not _valid_entry(name, entry):
            raise LatentHDRError(f"{MANIFEST}: malformed entry {name!r:.100}: {entry!r:.200}; accepted: "
                                 f"{MANIFEST_ACCEPTED}; reinstall latenthdr")
    return files


def _valid_entry(name: str, entry) -> bool:
    """A manifest entry: a plain file name in WEIGHTS_DIR, and the fields the registry reads, of their types."""
    return (name not in ("", ".", "..") and Path(name).name == name and not any(c in name for c in "/\\\x00")
            and isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
            and type(entry.get("bytes")) is int and entry["bytes"] >= 0 and entry.get("kind") in KINDS
            and isinstance(entry.get("space"), str) and isinstance(entry.get("codec", ""), str))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def shipped_file(name: str) -> Path:
    """Path of a shipped weight file after checking its size and sha256 against the manifest."""
    entry = manifest().get(name)
    if entry is None:
        raise InputError("weights", f"{name!r} is not shipped; accepted: the shipped files "
                                    f"({', '.join(manifest()) or 'none'})")
    path = WEIGHTS_DIR / name
    if not path.is_file() or path.stat().st_size != entry["bytes"] or sha256_of(path) != entry["sha256"]:
        raise LatentHDRError(f"{path}: missing or corrupted (sha256 differs from weights/manifest.json); "
                             "reinstall latenthdr")
    return path


def shipped_head_for(space: str) -> str | None:
    """Name of the shipped head for a latent space, or None."""
    return next((n for n, e in manifest().items() if e["kind"] == "head" and e["space"] == space), None)


def default_codec_spec() -> str:
    """The embedded codec when it is shipped, else TAEF2 (whose weights live outside the package)."""
    return EMBEDDED_CODEC if any(e["kind"] == "codec" for e in manifest().values()) else "taef2"


def load_codec_for(spec: str | None, device="cpu"):
    """A codec from a spec (``models.codecs.load_codec``), ``"embedded"`` for ours, None for the default."""
    from latenthdr.models import codecs

    spec = default_codec_spec() if spec is None else spec
    if spec == EMBEDDED_CODEC:
        name = next((n for n, e in manifest().items() if e["kind"] == "codec"), None)
        if name is None:
            raise InputError("codec", "the embedded codec is not shipped in this build; use --codec taef2 or a VAE")
        from latenthdr.models import tinycodec

        return tinycodec.load_embedded_codec(shipped_file(name), device=device)
    try:
        return codecs.load_codec(spec, device=device)
    except InputError as error:
        if error.argument != "codec" or not error.message.startswith("cannot load"):
            raise
        raise InputError("codec", error.message.replace("accepted: ", f"accepted: '{EMBEDDED_CODEC}' (ours), ", 1)) from None


def load_head_for(codec, head: str | None = None, device="cpu"):
    """The head file given, or the shipped head for ``codec.space``; refuses a head of another space."""
    from latenthdr.models.head import load_head

    if head is None:
        name = shipped_head_for(codec.space)
        if name is None:
            raise InputError("head", f"no shipped head for latent space {codec.space!r}; train one with "
                                     "`latenthdr train head` and pass --head RUN_DIR/head.safetensors")
        return load_head(shipped_file(name), expected_space=codec.space, device=device)
    return load_head(head, expected_space=codec.space, device=device)


def describe(codec, head_path: str | None) -> dict:
    """What ran, for sidecars and EXR metadata: codec space and class, head file and its sha256."""
    name = shipped_head_for(codec.space) if head_path is None else None
    path = shipped_file(name) if name else Path(head_path) if head_path else None
    return {"codec": type(codec).__name__, "space": codec.space,
            "head": str(path) if path else None, "head_sha256": sha256_of(path) if path else None}

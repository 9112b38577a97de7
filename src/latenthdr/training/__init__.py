"""Training: data (HDR folders -> samples -> latent caches), a model-agnostic loop, and one job per model.

- :mod:`latenthdr.training.loop`: seeds, EMA by half-life, AdamW with warmup + cosine, gradient clipping,
  atomic checkpoints with exact resume, jsonl log, progress bar; devices through ``accelerate``.
- :mod:`latenthdr.training.data`: sample specs, rendering and brackets, the on-disk latent cache.
- :mod:`latenthdr.training.head`: the exposure-head job (METHOD.md "Losses"); :mod:`latenthdr.training.head_eval`:
  its side inputs from cached samples and its validation.
Modules import torch models lazily; nothing here prints except the optional progress bars (stderr).
"""

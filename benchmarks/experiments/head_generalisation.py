"""Where a head's latent error comes from: the samples it trained on, new views of its scenes, new scenes.

    .venv/bin/python benchmarks/experiments/head_generalisation.py taef2 runs/cache-taef2-hdr \
        src/latenthdr/weights/taef2-head-v1.safetensors [more heads]

Scores each head's identity / head latent-error ratio (``training.head_eval.latent_metrics``, as in training) on:
- CACHE/train: the training samples (seed 0; the shipped TAEF2 head trained on these 480);
- new views: 112 fresh samples of the same 28 training panoramas, drawn with seed 1 (the same sampling
  options), cached once in runs/cache-<space>-newviews-seed1;
- CACHE/val: the 5 held-out panoramas.
A head that reads unseen maps or the EV-0 frame gets them from the caches' anchored HDR.
"""
import sys

import torch

from latenthdr import exposure
from latenthdr.models import registry
from latenthdr.models.head import load_head
from latenthdr.training import data
from latenthdr.training import head_eval

space, cache_root, heads = sys.argv[1], sys.argv[2], sys.argv[3:]
codec = registry.load_codec_for(space)
caches = {
    "train samples": data.open_latent_cache(f"{cache_root}/train"),
    "new views (seed 1)": data.build_latent_cache("../shared/data/hdri/train", codec, exposure.parse_ev_ladder("-7:5:1"),
                                                  112, f"runs/cache-{space}-newviews-seed1", 1, data.SamplingConfig(),
                                                  keep_hdr=True),
    "val scenes": data.open_latent_cache(f"{cache_root}/val"),
}
for path in heads:
    head = load_head(path, expected_space=codec.space).eval()
    for name, cache in caches.items():
        with torch.inference_mode():
            m = head_eval.latent_metrics(head, cache, 16, head.config.unseen_maps, head.config.frame_channels > 0)
        print(f"{path}  {name:20s} identity {m['identity_mse']:.4f}  head {m['latent_mse']:.4f}  "
              f"identity / head {m['identity_over_head']:.2f}x", flush=True)

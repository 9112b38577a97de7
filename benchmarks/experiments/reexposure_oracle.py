"""How far a head could go in a latent space: two re-exposure oracles against the identity (docs/head.md).

    .venv/bin/python benchmarks/experiments/reexposure_oracle.py runs/cache-taef2/val taef2

For every sample of a val latent cache built with its anchored HDR, and every EV e of the ladder:
- "dec": decode z0, re-expose the decoded frame exactly (linearise, x 2^e, clip, gamma 2.2, 8 bits), encode.
  What a head that learned "decode, re-expose, encode" would score.
- "true": re-expose the true 8-bit EV-0 frame, encode. It knows every pixel the 8-bit input holds, so its
  error is what the input cannot tell (clipped highlights for e < 0; 8-bit shadows for e > 0) plus the
  encoder's response to that.
Prints the latent MSE per EV against the cached targets, and the mean and identity / oracle ratio.
"""
import sys

import torch

from latenthdr import response
from latenthdr.models import registry
from latenthdr.training import data

torch.set_num_threads(1)
cache = data.open_latent_cache(sys.argv[1])
codec = registry.load_codec_for(sys.argv[2])
evs = torch.tensor(cache.evs)
total = {k: torch.zeros(len(evs)) for k in ("identity", "dec", "true")}
n = 0
with torch.inference_mode():
    for g in cache.groups:
        for i in range(len(g)):
            z, z0, H = g.z[i].float(), g.z0[i].float()[None], g.hdr[i]
            y0 = {"dec": codec.decode(z0, panorama=g.panorama)[0], "true": data.sample_bracket(H, [0.0])[0]}
            for name, y in y0.items():
                x = response.decode(y, data.CURVE)
                frames = torch.stack([response.quantize(response.encode((x * 2.0**e).clamp(0, 1), data.CURVE),
                                                        data.BITS) for e in cache.evs])
                total[name] += (codec.encode(frames, panorama=g.panorama).float() - z).square().mean(dim=(1, 2, 3))
            total["identity"] += (z0 - z).square().mean(dim=(1, 2, 3))
            n += 1
print("EV       ", " ".join(f"{e:6g}" for e in cache.evs))
for name, t in total.items():
    t = t / n
    ratio = (total["identity"] / n).mean() / t.mean()
    print(f"{name:9s}", " ".join(f"{v:6.4f}" for v in t), f" mean {t.mean():.4f}  identity/this {ratio:.2f}")

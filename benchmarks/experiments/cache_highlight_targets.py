"""Are the cached EV -3 targets right inside clipped pixels? Mean display value of the true frames against the decoded
cached latents, over training samples of a cache built with the anchored HDR (docs/embedded.md "Session 5").

    .venv/bin/python benchmarks/experiments/cache_highlight_targets.py   # reads runs/cache-embedded-hdr-u/train
"""
import torch
from latenthdr.training import data
from latenthdr.models import registry
torch.set_num_threads(1)
codec = registry.load_codec_for(None)
cache = data.open_latent_cache('runs/cache-embedded-hdr-u/train')
evs = cache.evs
k3 = evs.index(-3.0)
tot = {'true': 0, 'target': 0, 'n': 0}
for group in cache.groups:
    for i in range(0, min(len(group), 40)):
        H = group.hdr[i]
        y = data.sample_bracket(H, evs)  # [K,3,h,w]
        m = y[evs.index(0.0)].amax(0) >= 254.5/255
        if m.sum() < 50: continue
        dec = codec.decode(group.z[i, k3][None].float())[0]
        tot['true'] += y[k3].mean(0)[m].mean().item(); tot['target'] += dec.mean(0)[m].mean().item(); tot['n'] += 1
print({k: (v / tot['n'] if k != 'n' else v) for k, v in tot.items()}, 'clip level at -3:', (2**-3)**(1/2.2))

"""Ablation: the FiLM U-Net head with and without GroupNorm on the cached TAEF2 latents (docs/head.md).

    .venv/bin/python benchmarks/experiments/head_norm_ablation.py norm|nonorm STEPS PRESET

Needs the latent cache runs/cache-taef2 built by `latenthdr train head --cache runs/cache-taef2 ...`.
"""
import time, torch, sys
torch.set_num_threads(1)
from latenthdr.training.data import open_latent_cache
from latenthdr.models import head as H
tr = open_latent_cache('runs/cache-taef2/train'); va = open_latent_cache('runs/cache-taef2/val')
evs = torch.tensor(tr.evs)
g = [x for x in tr.groups if x.kind == 'crop'][0]; vg = [x for x in va.groups if x.kind == 'crop'][0]
mode = sys.argv[1]; steps = int(sys.argv[2]); preset = sys.argv[3]
if mode == 'nonorm':
    H.Norm.forward = lambda self, x: x
torch.manual_seed(0)
m = H.ExposureHead(H.HeadConfig.from_preset(preset, 32, 'taef2'))
opt = torch.optim.AdamW(m.parameters(), 1e-3)
def val():
    with torch.no_grad():
        p = m(vg.z0.float(), evs); t = vg.z.float()
        return ((p - t) ** 2).mean().item(), ((vg.z0.float()[:, None] - t) ** 2).mean().item()
t0 = time.time(); gen = torch.Generator().manual_seed(0)
for step in range(1, steps + 1):
    idx = torch.randint(0, len(g), (8,), generator=gen)
    p = m(g.z0[idx].float(), evs); loss = ((p - g.z[idx].float()) ** 2).mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % 100 == 0:
        v, i = val(); print(mode, preset, step, round(time.time() - t0), round(v, 4), round(i / v, 3), flush=True)

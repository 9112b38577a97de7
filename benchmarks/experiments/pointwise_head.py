"""A per-pixel FiLM MLP (3x3 conv in, 1x1 convs) as an exposure head, on the cached TAEF2 crops (docs/head.md).

    .venv/bin/python benchmarks/experiments/pointwise_head.py WIDTH SECONDS

Needs the latent cache runs/cache-taef2.
"""
import time, torch, torch.nn as nn, sys
torch.set_num_threads(1)
from latenthdr.training.data import open_latent_cache
tr = open_latent_cache('runs/cache-taef2/train'); va = open_latent_cache('runs/cache-taef2/val')
evs = torch.tensor(tr.evs)
g = [x for x in tr.groups if x.kind == 'crop'][0]
vg = [x for x in va.groups if x.kind == 'crop'][0]
C = g.z0.shape[1]; K = len(evs)
class PW(nn.Module):
    def __init__(s, hid=256):
        super().__init__()
        s.emb = nn.Sequential(nn.Linear(1, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU())
        s.c1 = nn.Conv2d(C, hid, 3, padding=1); s.f1 = nn.Linear(64, 2*hid)
        s.c2 = nn.Conv2d(hid, hid, 1); s.f2 = nn.Linear(64, 2*hid)
        s.c3 = nn.Conv2d(hid, C, 1)
        for m in (s.c3,): nn.init.zeros_(m.weight); nn.init.zeros_(m.bias)
    def forward(s, z0, e):
        B = z0.shape[0]; psi = s.emb(e[:, None] / 7)
        h = s.c1(z0).repeat_interleave(len(e), 0)
        p = psi.repeat(B, 1)
        a, b = s.f1(p)[..., None, None].chunk(2, 1); h = torch.nn.functional.silu(h * (1 + a) + b)
        h = s.c2(h); a, b = s.f2(p)[..., None, None].chunk(2, 1); h = torch.nn.functional.silu(h * (1 + a) + b)
        return z0[:, None] + s.c3(h).unflatten(0, (B, len(e)))
m = PW(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
opt = torch.optim.AdamW(m.parameters(), 1e-3)
def val():
    with torch.no_grad():
        p = m(vg.z0.float(), evs); t = vg.z.float()
        return ((p - t) ** 2).mean().item(), ((vg.z0.float()[:, None] - t) ** 2).mean().item()
t0 = time.time(); step = 0
while time.time() - t0 < float(sys.argv[2]) if len(sys.argv) > 2 else 120:
    idx = torch.randint(0, len(g), (8,))
    p = m(g.z0[idx].float(), evs); loss = ((p - g.z[idx].float()) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    if step % 200 == 0:
        v, i = val(); print(step, round(loss.item(), 4), round(v, 4), round(i / v, 3), flush=True)
v, i = val(); print('final', step, v, i, i / v)

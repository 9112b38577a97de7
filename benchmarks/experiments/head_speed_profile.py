"""The embedded head's cost at 512x256 (13 EVs, 1 thread): float32, bfloat16 autocast and bfloat16 weights, the output
difference against float32, and a torch.profiler table of the autocast pass (docs/embedded.md, docs/t2h.md).
The "before" profile of the padding change was this script at commit 5ff22b7.

    .venv/bin/python benchmarks/experiments/head_speed_profile.py [HEAD]   # docs: runs/embedded-head/head.safetensors (large)
"""
import copy, sys, time
import torch
torch.set_num_threads(1)
from latenthdr.models import registry
head = registry.load_head_for(registry.load_codec_for("embedded"), sys.argv[1] if len(sys.argv) > 1 else None)
hb = copy.deepcopy(head).to(torch.bfloat16)
z = torch.randn(1, 16, 32, 64); evs = torch.arange(-7., 6.)
def t(fn, n=5):
    fn(); ts=[]
    for _ in range(n):
        a=time.perf_counter(); fn(); ts.append(time.perf_counter()-a)
    return min(ts)
with torch.inference_mode():
    ref = head(z, evs, panorama=True)
    print('fp32', t(lambda: head(z, evs, panorama=True)))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        print('autocast bf16', t(lambda: head(z, evs, panorama=True)))
        o1 = head(z, evs, panorama=True)
    print('bf16 weights', t(lambda: hb(z, evs, panorama=True)))
    o2 = hb(z, evs, panorama=True)
    for o in (o1, o2): print('mse vs fp32', (o.float() - ref).square().mean().item(), o.dtype)
from torch.profiler import profile, ProfilerActivity
with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
    for _ in range(2): head(z, evs, panorama=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3): head(z, evs, panorama=True)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))

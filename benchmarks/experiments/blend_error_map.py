"""Where the PU21 error of the blend sits on leadenhall_market at 3% clipping (512x256; docs/head.md).

    .venv/bin/python benchmarks/experiments/blend_error_map.py
"""
import torch
torch.set_num_threads(1)
from latenthdr import io, metrics, merge
from latenthdr.bench import l2h
from latenthdr.pipeline import LatentHDRPipeline
H = io.to_tensor(io.read_hdr('../shared/data/hdri/val/leadenhall_market_1k.hdr').pixels)
H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
case = l2h.make_case('lead', H, 0.03)
pipe = LatentHDRPipeline.from_pretrained(codec='taef2')
out = pipe(case.ldr, evs='-7:5:1')
blend = pipe.merge(out.brackets, out.evs, case.ldr[None]).hdr[0]
inp = l2h.linearised_input(case.ldr, out.evs)
print('input', l2h.score(inp, case)); print('blend', l2h.score(blend, case))
# where is the PU error
s = metrics.peak_scale(case.ref)
for name, p in (('input', inp), ('blend', blend)):
    d = (metrics.pu21_encode(p.double() * s) - metrics.pu21_encode(case.ref.double() * s)).square().mean(0)
    clipped = l2h.clipped_mask(case.ldr); black = case.ldr.amax(0) <= 0.5/255; well = metrics.well_exposed_mask(case.ldr)
    print(name, 'sum sq err share: clipped %.3f black %.3f well %.3f other %.3f' % tuple(float(d[m].sum() / d.sum()) for m in (clipped, black, well, ~(clipped | black | well))), 'total', float(d.mean()))
print('gains', merge.calibration_gains(case.ldr.double(), out.brackets[0], out.evs))
ratio = (blend / case.ref.clamp_min(1e-9))[:, l2h.clipped_mask(case.ldr)]
print('clipped blend/ref median', ratio.median().item(), 'max', ratio.max().item(), 'ref max', case.ref.max().item(), 'blend max', blend.max().item())
# session 3: is the overshoot systematic or a few outliers? (luminance, after the l2h alignment)
lum = lambda x: 0.2126 * x[0] + 0.7152 * x[1] + 0.0722 * x[2]  # noqa: E731
clipped = l2h.clipped_mask(case.ldr)
aligned = blend * metrics.align_scale(blend, case.ref, metrics.well_exposed_mask(case.ldr))
r = (lum(aligned)[clipped] / lum(case.ref)[clipped]).log2()
print('log2 blend/ref in clipped pixels, p1 p10 p25 p50 p75 p90 p99:',
      [round(r.quantile(q).item(), 2) for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)])
s = metrics.peak_scale(case.ref)
e = (metrics.pu21_encode(aligned.double() * s) - metrics.pu21_encode(case.ref.double() * s)).square().mean(0)[clipped]
print('share of the clipped pixels\' squared PU21 error in their worst 10%:',
      round((e.sort().values[-len(e) // 10:].sum() / e.sum()).item(), 3))

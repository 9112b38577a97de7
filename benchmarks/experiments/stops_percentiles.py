"""P1 and P99 of reference, input and blend luminance per val panorama at 1024x512 (docs/embedded.md: the stops gap
is all at P99).

    .venv/bin/python benchmarks/experiments/stops_percentiles.py
"""
import glob
from latenthdr import io, metrics, response
from latenthdr.bench import l2h
from latenthdr.pipeline import LatentHDRPipeline
pipe = LatentHDRPipeline.from_pretrained()
lum = lambda x: response.luminance(x, channel_axis=-3)
for clip in (0.03, 0.05):
  for f in sorted(glob.glob('../shared/data/hdri/val/*')):
    H = io.to_tensor(io.read_hdr(f).pixels); case = l2h.make_case(f, H, clip)
    out = pipe(case.ldr, evs='-7:5:1', blend=True)
    inp = l2h.linearised_input(case.ldr, out.evs)
    row = [f.split('/')[-1][:14], '%.2f' % clip]
    for name, x in (('ref', case.ref), ('inp', inp), ('blend', out.hdr[0])):
        x = x * metrics.align_scale(x, case.ref, metrics.well_exposed_mask(case.ldr))
        Y = lum(x); Y = Y[Y > 0]
        row.append('%s P1 %.2e P99 %.2f zero %.3f' % (name, Y.quantile(0.01), Y.quantile(0.99), 1 - Y.numel() / lum(x).numel()))
    print(' | '.join(row), flush=True)

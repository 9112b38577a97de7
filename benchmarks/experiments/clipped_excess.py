"""Where the predicted highlights sit: mean log2 excess over the clip level inside the input's clipped pixels
(reference, decoded-only merge, blend) and the PU21-PSNR / clipped error of input and blend, per val panorama at
512x256 (docs/embedded.md "Why the highlights stay at the clip level").

    .venv/bin/python benchmarks/experiments/clipped_excess.py CODEC HEAD|- CLIP      # e.g. embedded - 0.03
"""
import sys, glob, torch
torch.set_num_threads(1)
from latenthdr import io, metrics
from latenthdr.bench import l2h
from latenthdr.pipeline import LatentHDRPipeline
codec = sys.argv[1]; head = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != '-' else None
clip = float(sys.argv[3]) if len(sys.argv) > 3 else 0.03
pipe = LatentHDRPipeline.from_pretrained(codec=codec, head=head)
for f in sorted(glob.glob('../shared/data/hdri/val/*')):
    H = io.to_tensor(io.read_hdr(f).pixels)
    H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
    case = l2h.make_case(f, H, clip)
    out = pipe(case.ldr, evs='-7:5:1')
    dec = pipe.merge(out.brackets, out.evs, None).hdr[0]
    blend = pipe.merge(out.brackets, out.evs, case.ldr[None]).hdr[0]
    inp = l2h.linearised_input(case.ldr, out.evs)
    m = l2h.clipped_mask(case.ldr)
    # scale: input clip level; align each to ref over well exposed
    def lum(x): return (0.2126*x[0]+0.7152*x[1]+0.0722*x[2])
    well = metrics.well_exposed_mask(case.ldr)
    def al(x):
        s = (lum(case.ref)[well].log().mean() - lum(x)[well].clamp_min(1e-9).log().mean()).exp()
        return x * s
    r = lum(case.ref)[m]; lvl = lum(al(inp))[m]
    row = [f.split('/')[-1][:18], 'n=%d' % int(m.sum()), 'ref/inp %.2f' % (r / lvl).log2().mean()]
    for name, x in (('dec', dec), ('blend', blend)):
        row.append('%s %.2f' % (name, (lum(al(x))[m] / lvl).log2().mean()))
    for name, x in (('inp', inp), ('blend', blend)):
        s = l2h.score(x, case); row.append('%s psnr %.2f clip %.3f' % (name, s['pu21_psnr'], s.get('clipped_rms_stops', float('nan'))))
    print(' | '.join(row), flush=True)

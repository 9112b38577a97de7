"""Display values inside the clipped pixels (512x256, 3% clipped), per dark EV: truth, the head's frame, the codec's
own reconstruction of the true frame (docs/embedded.md: studio_small_03 at EV -7), or, with ``--set``, one line
per panorama of a folder at EV -7 / -3 / -1 against the clip level's re-exposure (docs/embedded.md "Session 5":
the head under-fits highlights it saw in training).

    .venv/bin/python benchmarks/experiments/highlight_frames.py embedded - studio
    .venv/bin/python benchmarks/experiments/highlight_frames.py embedded HEAD --set train 12
"""
import sys, glob, torch
torch.set_num_threads(1)
from latenthdr import io
from latenthdr.bench import l2h
from latenthdr.training import data
from latenthdr.pipeline import LatentHDRPipeline


def clipped_frames(pipe, f):
    """(evs, true frames, head frames, clipped mask) of panorama file f at 512x256 with 3% clipped."""
    H = io.to_tensor(io.read_hdr(f).pixels)
    H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
    case = l2h.make_case(f, H, 0.03)
    out = pipe(case.ldr, evs='-7:5:1')
    # true frames from case.ref: case.ref is anchored so that ldr = Q(ref)
    return out.evs, data.sample_bracket(case.ref, out.evs), out.brackets[0], l2h.clipped_mask(case.ldr)


codec = sys.argv[1]; head = None if sys.argv[2] == '-' else sys.argv[2]
pipe = LatentHDRPipeline.from_pretrained(codec=codec, head=head)
if sys.argv[3] == '--set':
    for f in sorted(glob.glob('../shared/data/hdri/%s/*' % sys.argv[4]))[:int(sys.argv[5])]:
        evs, true, pred, m = clipped_frames(pipe, f)
        row = ['%+d: %.2f/%.2f clip-level %.2f' % (e, true[k].mean(0)[m].mean(), pred[k].mean(0)[m].mean(),
                                                   (2.0 ** e) ** (1 / 2.2)) for k, e in enumerate(evs) if e in (-1, -3, -7)]
        print('%-28s' % f.split('/')[-1][:28], ' | '.join(row), flush=True)
else:
    evs, true, pred, m = clipped_frames(pipe, glob.glob('../shared/data/hdri/val/%s*' % sys.argv[3])[0])
    y_oracle = pipe.codec.decode(pipe.codec.encode(true, panorama=True), panorama=True)
    for k, e in enumerate(evs):
        if e > 0: continue
        t = true[k].mean(0)[m]; p = pred[k].mean(0)[m]; o = y_oracle[k].mean(0)[m]
        print('ev %+d  true display in clipped: mean %.3f p90 %.3f | head %.3f p90 %.3f | codec(true) %.3f' % (e, t.mean(), t.quantile(0.9), p.mean(), p.quantile(0.9), o.mean()))

"""Display values inside the clipped pixels, per dark EV: truth, the head's frame, the codec's own reconstruction of the
true frame (docs/embedded.md: studio_small_03 at EV -7).

    .venv/bin/python benchmarks/experiments/highlight_frames.py embedded - studio
"""
import sys, glob, torch
torch.set_num_threads(1)
from latenthdr import io
from latenthdr.bench import l2h
from latenthdr.training import data
from latenthdr.pipeline import LatentHDRPipeline
codec = sys.argv[1]; head = None if sys.argv[2] == '-' else sys.argv[2]; name = sys.argv[3]
pipe = LatentHDRPipeline.from_pretrained(codec=codec, head=head)
f = glob.glob('../shared/data/hdri/val/%s*' % name)[0]
H = io.to_tensor(io.read_hdr(f).pixels)
H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
case = l2h.make_case(f, H, 0.03)
out = pipe(case.ldr, evs='-7:5:1')
m = l2h.clipped_mask(case.ldr)
# true frames from case.ref scaled so input clip level matches: case.ref is anchored so ldr = Q(ref)
true = data.sample_bracket(case.ref, out.evs)
z_true = pipe.codec.encode(true, panorama=True)
y_oracle = pipe.codec.decode(z_true, panorama=True)
for k, e in enumerate(out.evs):
    if e > 0: continue
    t = true[k].mean(0)[m]; p = out.brackets[0, k].mean(0)[m]; o = y_oracle[k].mean(0)[m]
    print('ev %+d  true display in clipped: mean %.3f p90 %.3f | head %.3f p90 %.3f | codec(true) %.3f' % (e, t.mean(), t.quantile(0.9), p.mean(), p.quantile(0.9), o.mean()))

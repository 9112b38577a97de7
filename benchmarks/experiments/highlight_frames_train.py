"""Display values inside the clipped pixels of TRAINING panoramas (512x256, 3% clipped) at EV -7 / -3 / -1: truth
against the head's frame, and the clip level's re-exposure (docs/embedded.md "Session 5": the head under-fits highlights it saw).

    .venv/bin/python benchmarks/experiments/highlight_frames_train.py HEAD|- train|val N
"""
import sys, glob, torch
torch.set_num_threads(1)
from latenthdr import io
from latenthdr.bench import l2h
from latenthdr.training import data
from latenthdr.pipeline import LatentHDRPipeline
head = None if sys.argv[1] == '-' else sys.argv[1]
pipe = LatentHDRPipeline.from_pretrained(codec=None, head=head)
for f in sorted(glob.glob('../shared/data/hdri/%s/*' % sys.argv[2]))[:int(sys.argv[3])]:
    H = io.to_tensor(io.read_hdr(f).pixels)
    H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
    case = l2h.make_case(f, H, 0.03)
    out = pipe(case.ldr, evs='-7:5:1')
    m = l2h.clipped_mask(case.ldr)
    true = data.sample_bracket(case.ref, out.evs)
    row = []
    for k, e in enumerate(out.evs):
        if e in (-1, -3, -7):
            t = true[k].mean(0)[m]; p = out.brackets[0, k].mean(0)[m]
            row.append('%+d: %.2f/%.2f clip-level %.2f' % (e, t.mean(), p.mean(), (2.0 ** e) ** (1 / 2.2)))
    print('%-28s' % f.split('/')[-1][:28], ' | '.join(row), flush=True)

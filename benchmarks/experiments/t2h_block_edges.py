"""Seam, mean adjacent-column and block-edge steps of text-to-HDR panoramas (8 panorama prompts) for several
guidance scales and step counts of the embedded prior (docs/t2h.md: block edges do not depend on sampling).

    .venv/bin/python benchmarks/experiments/t2h_block_edges.py
"""
import sys, torch
torch.set_num_threads(2)
sys.path.insert(0, 'benchmarks')
from t2h import column_phase_step
from latenthdr import metrics
from latenthdr.pipeline import LatentHDRPipeline
pipe = LatentHDRPipeline.from_pretrained(scene='embedded')
prompts = [l.split('|')[-1].strip() for l in open('benchmarks/prompts.txt') if l.startswith('panorama')]
for g, steps in [(3.0, 20), (1.5, 20), (1.0, 20), (3.0, 50)]:
    rows = []
    for i in range(8):
        out = pipe.generate(prompts[i], evs=list(range(-7, 6)), panorama=True, generator=torch.Generator().manual_seed(i), guidance_scale=g, num_inference_steps=steps)
        h = out.hdr[0]; s = metrics.seam_error(h)
        rows.append((s['seam'], s['adjacent'], column_phase_step(h, 8, -out.seam_shift_px % 8), metrics.bracket_consistency(out.brackets[0], out.evs)))
    print('g=%.1f steps=%d seam %.3f adjacent %.3f block %.3f consistency %.3f' % ((g, steps) + tuple(sum(r[k] for r in rows) / len(rows) for k in range(4))), flush=True)

"""Levels at which a codec's *decoded* EV-0 frame gives the same clipped / black maps as the 8-bit frame it encodes
(exposure.unseen_fractions), chosen on TRAINING panoramas: text-to-HDR has only the decoded frame.

For each training panorama (512x256) anchored at clipped fractions 1%, 3% and 10%, the exact maps of the 8-bit
frame are compared with the maps of decode(encode(frame)) at each candidate level; prints the mean absolute
difference per level (lower is better).

    .venv/bin/python benchmarks/experiments/decoded_unseen_levels.py [CODEC]
"""
import glob
import sys

import torch

from latenthdr import exposure, io
from latenthdr.models import registry
from latenthdr.training import data

torch.set_num_threads(1)
codec = registry.load_codec_for(sys.argv[1] if len(sys.argv) > 1 else None)
clipped_levels = (0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.995, exposure.CLIPPED_DISPLAY)
black_levels = (exposure.BLACK_DISPLAY, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04)
err_c = torch.zeros(len(clipped_levels))
err_b = torch.zeros(len(black_levels))
n = 0
for f in sorted(glob.glob('../shared/data/hdri/train/*')):
    H = io.to_tensor(io.read_hdr(f).pixels)
    H = torch.nn.functional.interpolate(H[None], size=(256, 512), mode='area')[0]
    for fraction in (0.01, 0.03, 0.1):
        y0 = data.sample_bracket(exposure.anchor(H, clipped_fraction=fraction)[0], [0.0])[0][None]  # [1,3,H,W]
        exact = exposure.unseen_fractions(y0, codec.downscale)
        decoded = codec.decode(codec.encode(y0, panorama=True), panorama=True)
        for i, level in enumerate(clipped_levels):
            err_c[i] += (exposure.unseen_fractions(decoded, codec.downscale, clipped_level=level)[:, 0] - exact[:, 0]).abs().mean()
        for i, level in enumerate(black_levels):
            err_b[i] += (exposure.unseen_fractions(decoded, codec.downscale, black_level=level)[:, 1] - exact[:, 1]).abs().mean()
        n += 1
print('clipped level | mean |map difference|')
for level, e in zip(clipped_levels, err_c / n):
    print(f'{level:.4f} | {e:.5f}')
print('black level | mean |map difference|')
for level, e in zip(black_levels, err_b / n):
    print(f'{level:.4f} | {e:.5f}')

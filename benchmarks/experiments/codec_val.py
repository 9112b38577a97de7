"""Codec validation (training/codec.py CodecValidator: 10 val crops x 13 EVs at 256x256) of codec files: mean PSNR,
the lowest per-EV PSNR and block_edge_excess (docs/codec.md, session 4).

    .venv/bin/python benchmarks/experiments/codec_val.py src/latenthdr/weights/latenthdr-tiny-v1.safetensors [MORE.safetensors]
"""
import sys, torch
torch.set_num_threads(1)
from latenthdr.models import tinycodec as tc
from latenthdr.training import codec as tcod
pans = tcod.load_panoramas("../shared/data/hdri/val", "val")
v = tcod.CodecValidator(pans, range(-7, 6), 10)
for path in sys.argv[1:]:
    m = tc.load_model(path)
    r = v(0, m, True)
    print(path, 'psnr %.3f' % r['psnr'], 'min-ev %.3f' % min(r['psnr_per_ev'].values()), 'edge excess %.3f' % r['block_edge_excess'])

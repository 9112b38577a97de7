"""Where the text-to-HDR block edges come from, and two fixes that do not work (docs/t2h.md, session 4).

    .venv/bin/python benchmarks/experiments/t2h_block_sources.py noise        # decoder vs latent noise and prior samples
    .venv/bin/python benchmarks/experiments/t2h_block_sources.py project TAU  # deblock + re-encode z0 (TAU 0: all borders)
    .venv/bin/python benchmarks/experiments/t2h_block_sources.py codec FILE   # 8 panoramas decoded by another decoder

`noise`: 8-bit luminance steps across latent-cell borders ("edge") and inside cells ("inner") of decoded frames,
for val-panorama latents plus Gaussian noise, and for prior samples. The other two modes print the mean seam,
adjacent-column and block-edge steps (stops), consistency and stops of 8 panorama prompts (seeds 0-7).
"""
import functools
import sys

import torch

sys.path.insert(0, "benchmarks")
from t2h import column_phase_step  # noqa: E402

from latenthdr import metrics  # noqa: E402
from latenthdr.pipeline import LatentHDRPipeline  # noqa: E402

torch.set_num_threads(1)
PROMPTS = [line.split("|")[-1].strip() for line in open("benchmarks/prompts.txt") if line.startswith("panorama")]


def edge_inner(y):
    Y = (0.2126 * y[:, 0] + 0.7152 * y[:, 1] + 0.0722 * y[:, 2]) * 255
    s = (Y[..., 1:] - Y[..., :-1]).abs().mean(dim=(0, 1))
    j = torch.arange(s.numel())
    return s[(j + 1) % 8 == 0].mean().item(), s[(j + 1) % 8 != 0].mean().item()


def deblock(y, tau):
    """Replace the two pixels at each cell border by a linear ramp between their outer neighbours, where the
    border step is below tau (tau <= 0: everywhere)."""
    y = y.clone()
    for dim in (-1, -2):
        n = y.shape[dim]
        a = torch.arange(7, n - 1, 8) if dim == -2 else torch.arange(7, n, 8)
        b = (a + 1) % n
        ya, yb = y.index_select(dim, a), y.index_select(dim, b)
        pa, pb = y.index_select(dim, a - 1), y.index_select(dim, (b + 1) % n)
        m = torch.ones_like(ya) if tau <= 0 else ((yb - ya).abs() < tau).to(y.dtype)
        y.index_copy_(dim, a, m * (pa + (pb - pa) / 3) + (1 - m) * ya)
        y.index_copy_(dim, b, m * (pa + 2 * (pb - pa) / 3) + (1 - m) * yb)
    return y


def panoramas(pipe, label):
    rows = []
    for i in range(8):
        out = pipe.generate(PROMPTS[i], evs=list(range(-7, 6)), panorama=True, generator=torch.Generator().manual_seed(i))
        h = out.hdr[0]
        s = metrics.seam_error(h)
        rows.append((s["seam"], s["adjacent"], column_phase_step(h, 8, -out.seam_shift_px % 8),
                     metrics.bracket_consistency(out.brackets[0], out.evs), metrics.stops(h)))
    print(label, "seam %.3f adjacent %.3f block %.3f consistency %.3f stops %.2f"
          % tuple(sum(r[k] for r in rows) / len(rows) for k in range(5)), flush=True)


def main(mode, arg=None):
    pipe = LatentHDRPipeline.from_pretrained(scene="embedded")
    codec, prior = pipe.codec, pipe.scene_source
    if mode == "noise":
        from latenthdr.training import data  # a val cache of the embedded codec (train head --cache)
        z = [g for g in data.open_latent_cache(arg or "runs/cache-embedded-1920/val").groups if g.panorama][0].z0[:8].float()
        print("val latents   edge %.2f inner %.2f" % edge_inner(codec.decode(z, panorama=True)))
        for sigma in (0.02, 0.05, 0.1, 0.2):
            zn = z + sigma * torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
            print("noise %.2f    edge %.2f inner %.2f" % ((sigma,) + edge_inner(codec.decode(zn, panorama=True))))
        for i in range(4):
            zp = prior.generate(PROMPTS[i], height=256, width=512, panorama=True, generator=torch.Generator().manual_seed(i))
            print("prior %d       edge %.2f inner %.2f" % ((i,) + edge_inner(codec.decode(zp, panorama=True))))
    elif mode == "project":
        panoramas(pipe, "plain")
        generate = prior.generate

        def projected(*a, **k):
            z = generate(*a, **k)
            pano = k.get("panorama", False)
            return codec.encode(deblock(codec.decode(z, panorama=pano), float(arg)).clamp(0, 1), panorama=pano)
        prior.generate = functools.partial(projected)
        panoramas(pipe, f"projected tau={arg}")
    elif mode == "codec":
        from latenthdr.models.tinycodec import load_embedded_codec
        panoramas(pipe, "shipped decoder")
        other = load_embedded_codec(arg)
        if other.space != codec.space:
            raise SystemExit(f"{arg}: latent space {other.space}, not {codec.space}")
        pipe.codec = other
        panoramas(pipe, arg)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(*sys.argv[1:])

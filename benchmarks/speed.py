"""Stage costs of image-to-HDR at one size, measured in one run on one machine, reported as times and ratios.

    .venv/bin/python benchmarks/speed.py --codec taef2 --head runs/taef2-head/head.safetensors --width 1024

Stages: codec encode of the input, ONE batched head pass for the whole ladder (as the pipeline runs it, with
its ``head_precision``; also in float32), codec decode of ONE frame, decode of the whole ladder (chunked), the
merge. Each is timed ``--repeats`` times after one warm-up; the median is reported.
The issue-3 criterion is ``head pass (K EVs) / decode of one frame < 1``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from latenthdr import exposure, merge
from latenthdr.models import registry
from latenthdr.models.codecs import decode_bracket
from latenthdr.pipeline import LatentHDRPipeline


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", help="codec spec (default: the embedded default)")
    parser.add_argument("--head", help="head file (default: the shipped head for the codec)")
    parser.add_argument("--width", type=int, default=1024, help="panorama width; height = width / 2")
    parser.add_argument("--evs", default="-7:5:1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    evs = exposure.parse_ev_ladder(args.evs)
    codec = registry.load_codec_for(args.codec)
    head = registry.load_head_for(codec, args.head)
    pipe, pipe_fp32 = LatentHDRPipeline(codec, head), LatentHDRPipeline(codec, head, head_precision="float32")
    g = torch.Generator().manual_seed(0)
    image = exposure.synthesize_bracket(torch.rand(1, 3, args.width // 2, args.width, generator=g) * 2, [0.0])[:, 0]
    with torch.inference_mode():
        z0 = codec.encode(image, panorama=True)
        inputs = pipe.head_inputs(z0, True, image)  # what the head reads besides z0 (maps of the input)
        z = pipe.expose(z0, evs, True, inputs)
        y = decode_bracket(codec, z, panorama=True)
        t = {
            "encode": median_seconds(lambda: codec.encode(image, panorama=True), args.repeats),
            "head_all_evs": median_seconds(lambda: pipe.expose(z0, evs, True, pipe.head_inputs(z0, True, image)),
                                           args.repeats),
            "head_all_evs_float32": median_seconds(
                lambda: pipe_fp32.expose(z0, evs, True, pipe.head_inputs(z0, True, image)), args.repeats),
            "decode_one_frame": median_seconds(lambda: codec.decode(z0, panorama=True), args.repeats),
            "decode_all_evs": median_seconds(lambda: decode_bracket(codec, z, panorama=True), 1),
            "merge": median_seconds(lambda: merge.merge_bracket(y, evs), args.repeats),
        }
    report = {"codec": codec.space, "size": [args.width // 2, args.width], "frames": len(evs),
              "head_precision": pipe.describe(args.head)["head_precision"],
              "threads": torch.get_num_threads(), "seconds": t,
              "head_over_one_decode": t["head_all_evs"] / t["decode_one_frame"],
              "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

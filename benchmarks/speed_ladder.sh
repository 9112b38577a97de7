#!/bin/bash
# Single-pass against multi-pass text-to-HDR for ladders of 3 to 25 frames (docs/RESULTS.md, "Speed").
cd "$(dirname "$0")/.."
for spec in "-1:1:1 3" "-3:3:1 7" "-7:5:1 13" "-7:5:0.5 25"; do
  set -- $spec
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/t2h.py --evs="$1" --limit 4 --threads 1 \
    --json docs/results/speed-ladder/frames-$2.json
done

#!/bin/bash
# Ablations of the embedded default at 512 px, 3% clipping, 21 val images (docs/RESULTS.md, "Ablations").
cd "$(dirname "$0")/.."
for spec in "-7:5:1 ladder-7_5-step1" "-7:5:0.5 ladder-7_5-step0.5" "-8:4:2 ladder-8_4-step2" "-3:3:1 ladder-3_3-step1"; do
  set -- $spec
  OMP_NUM_THREADS=1 .venv/bin/latenthdr bench l2h --data ../shared/data/hdri/val --data ../shared/data/photos/val \
    --clip 0.03 --max-side 512 --evs="$1" --baselines none \
    --json docs/results/ablations/$2.json --markdown docs/results/ablations/$2.md --overwrite
done

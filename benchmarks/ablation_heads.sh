#!/bin/bash
# Trained-head ablations of the embedded default (docs/RESULTS.md, "Ablations: trained variants"): equal-budget
# heads from one latent cache, each then scored by `bench l2h` as in benchmarks/ablations.sh.
#   benchmarks/ablation_heads.sh train VARIANT...   # default: every variant, two at a time, one thread each
#   benchmarks/ablation_heads.sh score VARIANT...
# The reference recipe is the shipped head's (docs/image-to-hdr.md) on a smaller budget: 1092 samples (12 views
# of each of the 91 training panoramas), 1200 steps; each variant changes one thing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/ablation-heads}
declare -A EXTRA=(
  [reference]="--preset base --unseen-maps"
  [no-film]="--preset base --unseen-maps --ev-conditioning input"
  [tiny]="--preset tiny --unseen-maps"
  [small]="--preset small --unseen-maps"
  [large]="--preset large --unseen-maps"
  [no-unseen-maps]="--preset base"
  [frame-32]="--preset base --unseen-maps --frame-channels 32"
  [reference-seed1]="--preset base --unseen-maps --seed 1 --cache $RUNS/cache-seed1"  # the run-to-run spread
)
ORDER="reference no-film tiny small large no-unseen-maps frame-32 reference-seed1"

COMMON="--codec embedded --data ../shared/data/hdri/train --val ../shared/data/hdri/val --evs=-7:5:1 \
  --samples 1092 --val-samples 40 --display-weight 2 --white-balance 0.15 --cache $RUNS/cache --no-progress"

train() {  # VARIANT [THREADS [STEPS]]
  OMP_NUM_THREADS=${2:-1} .venv/bin/latenthdr train head $COMMON --out "$RUNS/$1" ${EXTRA[$1]} \
    --steps ${3:-1200} --minutes 40 --val-every 200 --merged-every 3 --checkpoint-every 200 --threads ${2:-1} \
    > "$RUNS/$1.log" 2>&1
}

score() {
  OMP_NUM_THREADS=1 .venv/bin/latenthdr bench l2h --data ../shared/data/hdri/val --data ../shared/data/photos/val \
    --clip 0.03 --max-side 512 --head "$RUNS/$1/head.safetensors" --baselines none \
    --json "docs/results/ablations/head-$1.json" --markdown "docs/results/ablations/head-$1.md" --overwrite
}

mode=$1; shift
variants=${*:-$ORDER}
mkdir -p "$RUNS"
if [ "$mode" = train ]; then
  EXTRA[cache-build]="--preset tiny --unseen-maps"
  # one step on both threads: builds the cache (with the HDR) that the variants read (reference-seed1 builds its own)
  [ -f "$RUNS/cache-build/head.safetensors" ] || train cache-build 2 1
  export -f train; export RUNS COMMON; export EXTRA_DEF="$(declare -p EXTRA)"
  printf '%s\n' $variants | xargs -P 2 -I{} bash -c 'eval "$EXTRA_DEF"; train {}'
else
  for v in $variants; do score "$v"; done
fi

#!/usr/bin/env bash
# Retrains the interim bundled model (narrow generator, CPU) and its CUT control.
#   scripts/train_interim.sh [ITERS] [RUNS_DIR]
# Both runs use the same data, budget, crop and seed; each uses one CPU thread so that the two
# run side by side on a 2-core machine. The shipped weights are runs/interim_odcr/generator.safetensors
# converted with scripts/ship_weights.py.
set -euo pipefail
ITERS=${1:-2500}
RUNS=${2:-runs}
DATA=${ODCR_DATA:-../shared/data/train}
COMMON=(--hazy "$DATA/hazy" --clear "$DATA/clear" --iters "$ITERS" --crop 128 --load-size 256
        --ngf 32 --n-blocks 6 --seed 0 --device cpu --checkpoint-every 250 --sample-every 250
        --log-every 25 --training-data "odcr shared/data/train: 223 real hazy photos (DAWN fog and others), 357 clear photos (BSDS500, Urban100, Sun-Hays 80); research use")
OMP_NUM_THREADS=1 odcr train --method odcr --out "$RUNS/interim_odcr" "${COMMON[@]}" "${@:3}" &
OMP_NUM_THREADS=1 odcr train --method cut --out "$RUNS/interim_cut" "${COMMON[@]}" "${@:3}" &
wait

#!/usr/bin/env bash
# Retrains the interim bundled model (narrow generator, CPU) and its CUT control.
#   scripts/train_interim.sh [ITERS] [RUNS_DIR] [extra odcr-train flags...]
# Both runs use the same data, budget, crop and seed; each uses one CPU thread so that the two
# run side by side on a 2-core machine. The shipped weights are a checkpoint of
# RUNS_DIR/interim_odcr converted with scripts/ship_weights.py (see weights/MODEL_CARD.md).
#
# ODCR_SYNTH=1 widens the hazy domain with synthetic haze (odcr synth): 40% of the clear pool,
# two hazy versions each, written to RUNS_DIR/synth; those clear photos leave the clear pool.
# The runs are then called interim_synth_odcr / interim_synth_cut.
# ODCR_VAL=1 validates on shared/data/dev/paired every ODCR_VAL_EVERY (250) iterations (measuring only).
# ODCR_TAG=_x appends a tag to the run names (interim_x_odcr, ...).
# ODCR_METHODS="odcr" trains only the methods listed (default "odcr cut"), e.g. for an ablation arm:
#   ODCR_METHODS=odcr ODCR_TAG=_literal ODCR_VAL=1 ODCR_VAL_EVERY=1000 scripts/train_interim.sh 2500 runs --wpnce-hazy-pair literal
set -euo pipefail
ITERS=${1:-2500}
RUNS=${2:-runs}
DATA=${ODCR_DATA:-../shared/data/train}
DEV=${ODCR_DEV:-../shared/data/dev/paired}
NAME=interim${ODCR_TAG:-}
DESC="odcr shared/data/train: 223 real hazy photos (DAWN fog and others), 357 clear photos (BSDS500, Urban100, Sun-Hays 80); research use"
HAZY=(--hazy "$DATA/hazy")
CLEAR=(--clear "$DATA/clear")
if [[ "${ODCR_SYNTH:-0}" == 1 ]]; then
  NAME=interim_synth${ODCR_TAG:-}
  [[ -f "$RUNS/synth/sources.txt" ]] || odcr synth "$DATA/clear" -o "$RUNS/synth" --fraction 0.4 --variants 2 --seed 0
  HAZY+=(--hazy "$RUNS/synth/hazy")
  CLEAR+=(--exclude-clear "$RUNS/synth/sources.txt")
  DESC="$DESC; plus 286 synthetic hazy images (odcr synth, seed 0) made from 143 of the clear photos, which were left out of the clear pool"
fi
VAL=()
[[ "${ODCR_VAL:-0}" == 1 ]] && VAL=(--val-hazy "$DEV/hazy" --val-gt "$DEV/gt" --val-every "${ODCR_VAL_EVERY:-250}")
COMMON=("${HAZY[@]}" "${CLEAR[@]}" "${VAL[@]}" --iters "$ITERS" --crop 128 --load-size 256
        --ngf 32 --n-blocks 6 --seed 0 --device cpu --checkpoint-every 250 --keep-checkpoints 20
        --sample-every 250 --log-every 25 --training-data "$DESC")
for METHOD in ${ODCR_METHODS:-odcr cut}; do
  OMP_NUM_THREADS=1 odcr train --method "$METHOD" --out "$RUNS/${NAME}_${METHOD}" "${COMMON[@]}" "${@:3}" &
done
wait

#!/usr/bin/env bash
# Retrains the bundled scattering-output default (narrow generator, 2-core CPU) and, beside it,
# the ablation arms of its model card, all with the same data, seed and schedule.
#   scripts/train_scattering.sh [ITERS] [ARM_ITERS] [RUNS_DIR]
# The default runs all ITERS on one CPU thread; the arms run one after another on the other
# thread and stop at ARM_ITERS (--until: the LR schedule still spans ITERS), so that every arm
# is compared with the default's checkpoint at the same iteration.
# ODCR_ARMS="direct nodcp" runs only the arms listed; ODCR_ARMS="" none. ODCR_DEFAULT=0 skips the default.
# Every arm states the priors' weights it differs in: a flag left out takes the scattering recipe's
# value (odcr train --recipe), not zero. An arm built on DEFAULT or UNPAIRED repeats a flag to change
# it: the last one given wins.
set -euo pipefail
ITERS=${1:-2400}
ARM_ITERS=${2:-500}
RUNS=${3:-runs}
DATA=${ODCR_DATA:-../shared/data/train}
DESC="odcr shared/data/train: 223 real hazy photos (DAWN fog and others), 357 clear photos (BSDS500, Urban100, Sun-Hays 80); research use"
COMMON=(--hazy "$DATA/hazy" --clear "$DATA/clear" --iters "$ITERS" --crop 128 --load-size 256
        --ngf 32 --n-blocks 6 --seed 0 --device cpu --checkpoint-every 250 --keep-checkpoints 20
        --sample-every 250 --log-every 25 --training-data "$DESC")
# The default recipe (the bundled default since 2026-12-05; odcr train --recipe scattering):
# scattering output refining the DCP transmission (--t-prior dcp, the default), a DCP warm start
# fading out over 300 iterations, edge-aware smoothness of t, the semi-supervised t term on
# synthetic haze of the clear crops (--lambda-synth 3) whose density runs from none to thick
# (--synth-beta 0,2; the default since the afternoon of 2026-12-05), std-normalised WPNCE channel
# weights (the odcr default).
DEFAULT=(--output scattering --t-prior dcp --lambda-dcp 10 --dcp-warm-iters 300 --lambda-tv 5 --lambda-synth 3
         --synth-beta 0,2)
# The default of the morning of 2026-12-05 (synthetic haze beta 0.5 to 3); the arms beta03, beta02
# and notv_synth3 are measured against it.
SYNTH3=(--output scattering --t-prior dcp --lambda-dcp 10 --dcp-warm-iters 300 --lambda-tv 5 --lambda-synth 3
        --synth-beta 0.5,3)
# The purely unpaired recipe of the default before 2026-12-05; the arms measured against it (the
# model card's tables) build on it.
UNPAIRED=(--output scattering --t-prior dcp --lambda-dcp 10 --dcp-warm-iters 300 --lambda-tv 5 --lambda-synth 0)
# density: the recipe with density consistency (docs/scattering.md). long: the recipe with twice the
# iterations; it runs its whole schedule only with ARM_ITERS = 2 x ITERS (about 3.3 h on one thread).
declare -A ARM=(
  [unpaired]="${UNPAIRED[*]}"
  [synth]="${UNPAIRED[*]} --lambda-synth 10"
  [hazymore]="${UNPAIRED[*]} --hazy $DATA/hazy_more"
  [narrow]="${UNPAIRED[*]} --ngf 16"
  [direct]="--output image --lambda-dcp 0 --lambda-tv 0 --lambda-synth 0"
  [nodcp]="${UNPAIRED[*]} --lambda-dcp 0"
  [notv]="${UNPAIRED[*]} --lambda-tv 0"
  [synth3]="${SYNTH3[*]}"
  [notv_synth3]="${SYNTH3[*]} --lambda-tv 0"
  [beta03]="${SYNTH3[*]} --synth-beta 0,3"
  [beta02]="${SYNTH3[*]} --synth-beta 0,2"
  [density]="${DEFAULT[*]} --lambda-density 3"
  [long]="${DEFAULT[*]} --iters $((2 * ITERS))"
  [noprior]="${UNPAIRED[*]} --t-prior none"
  [dark]="${UNPAIRED[*]} --lambda-dark 1"
  [learnedA]="${UNPAIRED[*]} --learned-airlight"
  [printed]="${UNPAIRED[*]} --weight-scale printed"
  [cut]="${UNPAIRED[*]} --method cut"
)
ORDER=${ODCR_ARMS-unpaired synth hazymore direct cut printed nodcp dark learnedA notv noprior}
mkdir -p "$RUNS"
[[ "${ODCR_DEFAULT:-1}" == 1 ]] && OMP_NUM_THREADS=1 odcr train --out "$RUNS/scat_default" "${COMMON[@]}" "${DEFAULT[@]}" > "$RUNS/scat_default.out" 2>&1 &
(
  for name in $ORDER; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 odcr train --out "$RUNS/scat_$name" --until "$ARM_ITERS" "${COMMON[@]}" ${ARM[$name]} \
      > "$RUNS/scat_$name.out" 2>&1 || echo "arm $name failed" >&2
  done
) &
wait

#!/usr/bin/env bash
# The bundled default's whole chain, from the training photos to the two shipped models: the
# teacher (the scattering recipe, odcr_cli/tasks/train/recipes/scattering.toml), its int8 export,
# the student distilled from it (odcr distill, recipes/distill.toml), its int8 export, and both
# models' dev-pair scores recorded in weights/models.json. Each step is the recipe its model's
# entry in weights/models.json lists (tests/test_bundled.py keeps the two the same).
#   scripts/make_default.sh     about 2.5 hours on a 2-core CPU; writes runs/ and weights/
# It replaces the bundled weights: commit or stash weights/ first, and compare before shipping.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi
cd "$(dirname "$0")/.."

# 1. The teacher: the scattering recipe, one CPU thread (~100 min).
odcr train --hazy ../shared/data/train/hazy --clear ../shared/data/train/clear --out runs/scat_default --recipe scattering --iters 2400 --crop 128 --load-size 256 --ngf 32 --n-blocks 6 --seed 0 --device cpu
# 2. The photos the int8 graphs are calibrated on (training photos, never the dev pairs).
mkdir -p runs/calib && ls ../shared/data/train/hazy | awk 'NR%7==1' | head -32 | while read f; do ln -sf "$PWD/../shared/data/train/hazy/$f" runs/calib/; done
# 3. The teacher shipped: fp16 storage, its int8 ONNX graph.
python scripts/ship_weights.py runs/scat_default/generator.safetensors --name odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema --fp16 --int8 runs/calib
# 4. The student: the teacher's t on every training photo, then 3,000 steps (~35 min).
odcr distill --hazy ../shared/data/train/hazy --hazy ../shared/data/train/hazy_more --clear ../shared/data/train/clear --out runs/student --teacher odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema --ngf 16 --n-blocks 6 --sides 256,320,384 --side 320 --iters 3000 --lr 1e-3
# 5. The student shipped as the default.
python scripts/ship_weights.py runs/student/generator.safetensors --name odcr-scatter-student-ngf16-b6-320-cpu --default --fp16 --int8 runs/calib
# 6. Both scored on the dev pairs as odcr dehaze runs them, and the scores recorded.
odcr evaluate --pairs ../shared/data/dev/paired -m odcr -m odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema -m dcp -m dcp@128 -m input --no-fade --json runs/dev_scores.json
python scripts/record_metrics.py runs/dev_scores.json --model odcr-scatter-student-ngf16-b6-320-cpu --method odcr --command "odcr evaluate --pairs ../shared/data/dev/paired -m odcr -m odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema -m dcp -m dcp@128 -m input --no-fade" --machine "$(uname -m), $(nproc) cores, $(date +%F)"
python scripts/record_metrics.py runs/dev_scores.json --model odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema --command "odcr evaluate --pairs ../shared/data/dev/paired -m odcr -m odcr-scatter-synth3-beta02-ngf32-b6-cpu-ema -m dcp -m dcp@128 -m input --no-fade" --machine "$(uname -m), $(nproc) cores, $(date +%F)"

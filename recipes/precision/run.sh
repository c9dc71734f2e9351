#!/usr/bin/env bash
# Do bf16 features cost downstream accuracy?  KS and SID probes on the same model's fp32 and bf16 features,
# compared pairwise on the same test utterances (ofactl compare: the difference, its 95% interval, a verdict,
# and whether the interval lies within +-MARGIN).
#   bash recipes/precision/run.sh                     # a random-init distilhubert-size student, synthetic corpus
#   MODEL=exp/mini/ofa-lmax2 bash recipes/precision/run.sh   # a trained model instead
# Everything is under $EXP; results in $EXP/results.csv, the verdicts in $EXP/compare.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/precision}
OFACTL=${OFACTL:-.venv/bin/ofactl}
PYTHON=${PYTHON:-$(dirname "$OFACTL")/python}
MODEL=${MODEL:-}
LAMBDA=${LAMBDA:-1.0}            # the operating point (by lambda: no calibration needed)
SPEAKERS=${SPEAKERS:-12}
TEST_UTTS=${TEST_UTTS:-300}      # test utterances per task: the width of the intervals
MARGIN=${MARGIN:-0.02}           # "on par" means the paired 95% interval lies within +-2 points
PROBE_ARGS=${PROBE_ARGS:---max-epochs 20}
mkdir -p "$EXP"

if [ ! -d "$EXP/corpus" ]; then
  $OFACTL data synth "$EXP/corpus" --speakers "$SPEAKERS" --held-out-speakers 2 --utterances 200 \
    --dev-utterances 100 --test-utterances "$TEST_UTTS" --quiet
fi
if [ -z "$MODEL" ]; then
  MODEL="$EXP/distilhubert-random"
  [ -f "$MODEL/model.pt" ] || "$PYTHON" -c "
import sys, torch
from ofactl.checkpoint import save_model
from ofactl.model import OFAStudent, StudentConfig
torch.manual_seed(0)
save_model(sys.argv[1], OFAStudent(StudentConfig.preset('distilhubert')))" "$MODEL"
fi
name=$(basename "$MODEL")
declare -A DATA=([ks]=speech_commands_v0.01 [sid]=VoxCeleb1)
: > "$EXP/compare.txt"
for task in ks sid; do
  for precision in fp32 bf16; do
    start=$(date +%s)
    # shellcheck disable=SC2086
    $OFACTL probe --task "$task" --data "$EXP/corpus/${DATA[$task]}" --model "$MODEL" --lambda "$LAMBDA" \
      --precision "$precision" --results "$EXP/results.csv" --features-dir "$EXP/features" --quiet $PROBE_ARGS
    echo "$task $precision: $(( $(date +%s) - start )) s" >> "$EXP/times.txt"
  done
  $OFACTL compare "$EXP/results.csv" --task "$task" --a "$name@lambda=$LAMBDA:fp32" --b "$name@lambda=$LAMBDA:bf16" \
    --margin "$MARGIN" | tee -a "$EXP/compare.txt"
done

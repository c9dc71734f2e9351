#!/usr/bin/env bash
# The mini reproduction: the paper's Figures 2 and 3 at toy scale, on 2 CPU cores.
# Every output is under $EXP; each stage is skipped once its .done marker exists.
#   0 synthesise the corpus (espeak-ng)      4 calibrate lambda <-> frame period (each model)
#   1 train the small teacher (phone CTC +   5 sweep KS, SID, IC, PR over $PERIODS; baselines:
#     speaker head)                             fixed lambda=1, lambda_max=0 at 20 ms and avg-pooled
#   2 guidance segments from the teacher     6 adaptive lambda on IC (--learn-lambda)
#   3 pretrain three students: OFA           7 plot the trade-off ($EXP/tradeoff.png) and the table
#     lambda_max 2, fixed lambda 1, lambda_max 0
# Usage: bash recipes/mini/run.sh [--stage N] [--stop-stage N]
# Smaller runs (the CI test): SPEAKERS=6 UTTERANCES=120 TEACHER_STEPS=20 STEPS=20 PERIODS=20ms,200ms \
#   PROBE_ARGS="--max-epochs 2" bash recipes/mini/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/mini}
OFACTL=${OFACTL:-.venv/bin/ofactl}
SPEAKERS=${SPEAKERS:-16}
UTTERANCES=${UTTERANCES:-1000}
TEACHER_STEPS=${TEACHER_STEPS:-1000}
STEPS=${STEPS:-600}
PERIODS=${PERIODS:-20ms,35ms,60ms,100ms,160ms,250ms,400ms,640ms,1000ms}
TASKS=${TASKS:-ks sid ic pr}
ADAPTIVE_TASK=${ADAPTIVE_TASK:-ic}
PROBE_ARGS=${PROBE_ARGS:---max-epochs 20}   # options for every sweep and probe
RECIPE=mini
stage=0
source recipes/stages.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

CORPUS="$EXP/corpus"
TEACHER="$EXP/teacher/teacher.pth"
OFA="$EXP/ofa-lmax2"
FIXED="$EXP/fixed-lam1"
PLAIN="$EXP/distilhubert-lmax0"
RESULTS="$EXP/results.csv"
declare -A DATA=([ks]=speech_commands_v0.01 [sid]=VoxCeleb1 [ic]=fluent_speech_commands_dataset [pr]=LibriSpeech)

if run_stage 0 synth; then
  log "stage 0: synthesise the corpus (espeak-ng, $SPEAKERS voices, $UTTERANCES LibriSpeech utterances)"
  $OFACTL data synth "$CORPUS" --speakers "$SPEAKERS" --utterances "$UTTERANCES" --quiet
  done_stage synth
fi

if run_stage 1 teacher; then
  log "stage 1: train the teacher (tiny HuBERT shape; phone CTC + speaker head, $TEACHER_STEPS steps)"
  $OFACTL teacher train "$CORPUS/LibriSpeech" --out "$EXP/teacher" --steps "$TEACHER_STEPS" --quiet
  done_stage teacher
fi

if run_stage 2 segments; then
  log "stage 2: guidance segments (teacher layer 4 -> k-means -> DP)"
  $OFACTL segment "$CORPUS/LibriSpeech" --split train-clean-100 --teacher "$TEACHER" --layer 4 \
    --clusters 50 --smoothing 2 --out "$EXP/segments.tsv" --quiet
  done_stage segments
fi

pretrain() {  # pretrain DIR [--set KEY=VALUE ...]
  local out=$1; shift
  local resume=""
  [ -f "$out/train_state.pt" ] && resume="--resume"
  $OFACTL pretrain --config recipes/mini/pretrain.yaml --data "$CORPUS/LibriSpeech" --teacher "$TEACHER" \
    --segments "$EXP/segments.tsv" --out "$out" --max-steps "$STEPS" $resume --quiet "$@"
}

if run_stage 3 pretrain; then
  log "stage 3: pretrain OFA (lambda ~ U[0, 2)), fixed lambda = 1 and lambda_max = 0, $STEPS steps each"
  pretrain "$OFA"
  pretrain "$FIXED" --set fixed_lambda=1
  pretrain "$PLAIN" --set lambda_max=0
  done_stage pretrain
fi

if run_stage 4 calibrate; then
  log "stage 4: calibrate the three models on the train split ($EXP/calibration.png: OFA's curve)"
  $OFACTL calibrate "$CORPUS/LibriSpeech" --model "$OFA" --split train-clean-100 --plot "$EXP/calibration.png" --quiet
  for model in "$FIXED" "$PLAIN"; do
    $OFACTL calibrate "$CORPUS/LibriSpeech" --model "$model" --split train-clean-100 --quiet
  done
  done_stage calibrate
fi

if run_stage 5 sweep; then
  for task in $TASKS; do
    data="$CORPUS/${DATA[$task]}"
    log "stage 5: $task - OFA over $PERIODS"
    $OFACTL sweep --task "$task" --data "$data" --model "$OFA" --periods "$PERIODS" --results "$RESULTS" --quiet $PROBE_ARGS
    log "stage 5: $task - baselines (fixed lambda 1; lambda_max 0 at 20 ms and average-pooled)"
    $OFACTL sweep --task "$task" --data "$data" --model "$FIXED" --lambdas 1 --results "$RESULTS" --quiet $PROBE_ARGS
    $OFACTL sweep --task "$task" --data "$data" --model "$PLAIN" --periods 20ms --results "$RESULTS" --quiet $PROBE_ARGS
    $OFACTL sweep --task "$task" --data "$data" --model "$PLAIN" --periods "${PERIODS#20ms,}" --pooling avg \
      --results "$RESULTS" --quiet $PROBE_ARGS
  done
  done_stage sweep
fi

if run_stage 6 adaptive; then
  log "stage 6: adaptive lambda on $ADAPTIVE_TASK (lambda = lambda_max * sigmoid(theta), learned with the probe)"
  $OFACTL probe --task "$ADAPTIVE_TASK" --data "$CORPUS/${DATA[$ADAPTIVE_TASK]}" --model "$OFA" --learn-lambda \
    --results "$RESULTS" --quiet $PROBE_ARGS
  done_stage adaptive
fi

if run_stage 7 plot; then
  log "stage 7: trade-off figure and table"
  $OFACTL plot "$RESULTS" -o "$EXP/tradeoff.png"
  $OFACTL plot "$RESULTS" --table
  done_stage plot
fi

log "done; the figure is $EXP/tradeoff.png, the results table $RESULTS"

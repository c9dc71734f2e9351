#!/usr/bin/env bash
# The mini recipe: the whole ofactl pipeline on the synthetic corpus with the
# tiny preset, on CPU.  Stages (each skipped once its .done marker exists):
#   0 synthesise the corpus       3 calibrate on the train split
#   1 guidance segments           4 extract dev+test at 20, 90 and 960 ms
#   2 pretrain OFA (lambda_max 2) 5 sweep KS, SID, IC, PR over $PERIODS
#                                 6 plot the trade-off (exp/mini/tradeoff.png)
# Usage: bash recipes/mini/run.sh [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/mini}
OFACTL=${OFACTL:-.venv/bin/ofactl}
TEACHER=${TEACHER:-tiny-random}
STEPS=${STEPS:-600}
PERIODS=${PERIODS:-20ms,40ms,90ms,200ms,500ms,960ms}
RECIPE=mini
stage=0
source recipes/stages.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

if run_stage 0 synth; then
  log "stage 0: synthesise the corpus (espeak-ng, 8 voices)"
  $OFACTL data synth "$EXP/corpus" --speakers 8 --utterances 200 --quiet
  done_stage synth
fi

if run_stage 1 segments; then
  log "stage 1: HuBERT-code guidance segments from the teacher ($TEACHER)"
  $OFACTL segment "$EXP/corpus/LibriSpeech" --split train-clean-100 --teacher "$TEACHER" \
    --clusters 50 --smoothing 2 --out "$EXP/segments.tsv" --quiet
  done_stage segments
fi

if run_stage 2 pretrain; then
  log "stage 2: OFA pretraining, lambda ~ U[0, 2), $STEPS steps"
  resume=""
  [ -f "$EXP/ofa-lmax2/train_state.pt" ] && resume="--resume"
  $OFACTL pretrain --config recipes/mini/pretrain.yaml --data "$EXP/corpus/LibriSpeech" \
    --teacher "$TEACHER" --segments "$EXP/segments.tsv" --out "$EXP/ofa-lmax2" --max-steps "$STEPS" $resume --quiet
  done_stage pretrain
fi

if run_stage 3 calibrate; then
  log "stage 3: calibrate lambda <-> frame period on the train split"
  $OFACTL calibrate "$EXP/corpus/LibriSpeech" --model "$EXP/ofa-lmax2" --split train-clean-100 --quiet
  done_stage calibrate
fi

if run_stage 4 extract; then
  mkdir -p "$EXP/features"
  for period in 20ms 90ms 960ms; do
    for split in dev-clean test-clean; do
      log "stage 4: extract $split at $period"
      $OFACTL extract --period "$period" "$EXP/corpus/LibriSpeech" "$EXP/features/$split-$period.h5" \
        --split "$split" --model "$EXP/ofa-lmax2" --workers 1 --quiet
    done
  done
  done_stage extract
fi

if run_stage 5 sweep; then
  log "stage 5: sweeps over frame periods ($PERIODS)"
  for pair in ks:speech_commands_v0.01 sid:VoxCeleb1 ic:fluent_speech_commands_dataset pr:LibriSpeech; do
    task=${pair%%:*}
    $OFACTL sweep --task "$task" --data "$EXP/corpus/${pair#*:}" --model "$EXP/ofa-lmax2" \
      --periods "$PERIODS" --results "$EXP/results.csv" --quiet
  done
  done_stage sweep
fi

if run_stage 6 plot; then
  log "stage 6: trade-off figure and table"
  $OFACTL plot "$EXP/results.csv" -o "$EXP/tradeoff.png"
  $OFACTL plot "$EXP/results.csv" --table
  done_stage plot
fi

log "done; everything is under $EXP"

#!/usr/bin/env bash
# The mini recipe: the whole ofactl pipeline on the synthetic corpus with the
# tiny preset, on CPU.  Stages (each skipped once its .done marker exists):
#   0 synthesise the corpus       3 calibrate on the train split
#   1 guidance segments           4 extract dev+test at 20, 90 and 960 ms
#   2 pretrain OFA (lambda_max 2) 5 sweep + 6 plot (once those commands exist)
# Usage: bash recipes/mini/run.sh [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/mini}
OFACTL=${OFACTL:-.venv/bin/ofactl}
TEACHER=${TEACHER:-tiny-random}
STEPS=${STEPS:-600}
stage=0
stop_stage=100
while [ $# -gt 0 ]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') [mini] $*"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] && [ ! -f "$EXP/.$2.done" ]; }
done_stage() { touch "$EXP/.$1.done"; }
has_command() { $OFACTL "$1" --help >/dev/null 2>&1; }
mkdir -p "$EXP"
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
  [ -f "$EXP/ofa/model/train_state.pt" ] && resume="--resume"
  $OFACTL pretrain --config recipes/mini/pretrain.yaml --data "$EXP/corpus/LibriSpeech" \
    --teacher "$TEACHER" --segments "$EXP/segments.tsv" --out "$EXP/ofa/model" --max-steps "$STEPS" $resume --quiet
  done_stage pretrain
fi

if run_stage 3 calibrate; then
  log "stage 3: calibrate lambda <-> frame period on the train split"
  $OFACTL calibrate "$EXP/corpus/LibriSpeech" --model "$EXP/ofa/model" --split train-clean-100 --quiet
  done_stage calibrate
fi

if run_stage 4 extract; then
  mkdir -p "$EXP/features"
  for period in 20ms 90ms 960ms; do
    for split in dev-clean test-clean; do
      log "stage 4: extract $split at $period"
      $OFACTL extract --period "$period" "$EXP/corpus/LibriSpeech" "$EXP/features/$split-$period.h5" \
        --split "$split" --model "$EXP/ofa/model" --workers 1 --quiet
    done
  done
  done_stage extract
fi

if run_stage 5 sweep; then
  if has_command sweep; then
    log "stage 5: sweeps over frame periods"
    for task in ks sid ic pr; do
      $OFACTL sweep --task "$task" --model "$EXP/ofa/model" --results "$EXP/results.csv" --quiet
    done
    done_stage sweep
  else
    log "stage 5: skipped: this ofactl has no 'sweep' command yet"
  fi
fi

if run_stage 6 plot; then
  if has_command plot && [ -f "$EXP/results.csv" ]; then
    log "stage 6: trade-off figure"
    $OFACTL plot "$EXP/results.csv" -o "$EXP/tradeoff.png"
    done_stage plot
  else
    log "stage 6: skipped: no 'plot' command or no results yet"
  fi
fi

log "done; everything is under $EXP"

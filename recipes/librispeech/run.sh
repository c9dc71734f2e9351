#!/usr/bin/env bash
# OFA on LibriSpeech 960 h with a HuBERT Base teacher (the paper's setting).
# Needs the data, a teacher checkpoint and GPUs; edit the paths below.
# Stages (each skipped once its .done marker exists under $EXP):
#   1 guidance segments (HuBERT codes: layer 6, 100 clusters, smoothing 30)
#   2 OFA pretraining, lambda ~ U[0, 2)   (torchrun over $NGPU GPUs)
#   3 calibrate on dev-clean              4 extract dev/test at several periods
#   5 sweeps (SUPERB tasks)               6 trade-off plots
# Usage: bash recipes/librispeech/run.sh [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")/../.."

LIBRISPEECH=${LIBRISPEECH:-/data/LibriSpeech}
TEACHER=${TEACHER:-/models/hubert_base_ls960.pt}
EXP=${EXP:-exp/librispeech}
NGPU=${NGPU:-8}
OFACTL=${OFACTL:-ofactl}
PERIODS=${PERIODS:-"20ms 40ms 90ms 160ms 320ms 960ms"}
TASKS=${TASKS:-"pr ks ic sid er asr"}
RECIPE=librispeech
stage=1
source recipes/stages.sh "$@"

if run_stage 1 segments; then
  log "stage 1: HuBERT-code guidance segments on train-960"
  $OFACTL segment "$LIBRISPEECH" --teacher "$TEACHER" --layer 6 --clusters 100 --smoothing 30 \
    --out "$EXP/segments.tsv"
  done_stage segments
fi

if run_stage 2 pretrain; then
  log "stage 2: OFA pretraining on $NGPU GPUs (resumes after an interruption)"
  resume=""
  [ -f "$EXP/ofa-lmax2/model/train_state.pt" ] && resume="--resume"
  torchrun --nproc_per_node "$NGPU" -m ofactl pretrain --config recipes/librispeech/pretrain.yaml \
    --data "$LIBRISPEECH" --teacher "$TEACHER" --segments "$EXP/segments.tsv" --out "$EXP/ofa-lmax2/model" $resume
  done_stage pretrain
fi

if run_stage 3 calibrate; then
  log "stage 3: calibrate on dev-clean"
  $OFACTL calibrate "$LIBRISPEECH" --split dev-clean --model "$EXP/ofa-lmax2/model"
  done_stage calibrate
fi

if run_stage 4 extract; then
  mkdir -p "$EXP/features"
  for period in $PERIODS; do
    for split in dev-clean test-clean; do
      log "stage 4: extract $split at $period"
      torchrun --nproc_per_node "$NGPU" -m ofactl extract --period "$period" "$LIBRISPEECH" \
        "$EXP/features/$split-$period.h5" --split "$split" --model "$EXP/ofa-lmax2/model" --device cuda
    done
  done
  done_stage extract
fi

if run_stage 5 sweep; then
  log "stage 5: sweeps (dataset paths come from ofactl.toml [data])"
  for task in $TASKS; do
    $OFACTL sweep --task "$task" --model "$EXP/ofa-lmax2/model" --results "$EXP/results.csv"
  done
  done_stage sweep
fi

if run_stage 6 plot; then
  log "stage 6: trade-off plots"
  $OFACTL plot "$EXP/results.csv" -o "$EXP/tradeoff.pdf" --x period
  $OFACTL plot "$EXP/results.csv" -o "$EXP/tradeoff-macs.pdf" --x macs
  done_stage plot
fi

log "done; everything is under $EXP"

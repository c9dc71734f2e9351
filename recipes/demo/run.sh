#!/usr/bin/env bash
# The demo of what ofactl can do so far (the mini recipe takes over once
# pretraining, calibration and sweeps exist).  All outputs go under $EXP.
#   bash recipes/demo/run.sh [--stage N] [--stop-stage N]
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/demo}
OFACTL=${OFACTL:-.venv/bin/ofactl}
PYTHON=${PYTHON:-.venv/bin/python}
stage=0
stop_stage=100
while [ $# -gt 0 ]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') [demo] $*"; }
mkdir -p "$EXP"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ] && [ ! -f "$EXP/.synth.done" ]; then
  log "stage 0: synthesise a small speech corpus (espeak-ng, 8 voices)"
  $OFACTL data synth "$EXP/corpus" --speakers 8 --utterances 120 --quiet
  touch "$EXP/.synth.done"
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "stage 1: inspect it in its LibriSpeech and Speech Commands layouts"
  $OFACTL data inspect "$EXP/corpus/LibriSpeech" --quiet
  $OFACTL data inspect "$EXP/corpus/speech_commands_v0.01" --quiet
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  log "stage 2: one OFA student at several lambdas (randomly initialised tiny preset)"
  $PYTHON examples/student_at_several_lambdas.py
fi

log "done; outputs under $EXP"

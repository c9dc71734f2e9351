#!/usr/bin/env bash
# The mini reproduction: the paper's Figures 2 and 3 and its five claims at toy scale, on 2 CPU cores.
# Every output is under $EXP; each stage is skipped once its .done marker exists.
#   0 synthesise the corpus (espeak-ng; 500 test and    4 calibrate lambda <-> frame period (each model)
#     200 dev utterances per task)                      5 sweep KS, SID, IC, PR: OFA models over their
#   1 train the small teacher (phone CTC + speaker)       ranges; fixed-length pooling in the widest;
#   2 guidance segments from the teacher                  fixed lambda 1; lambda_max 0 at 20 ms
#   3 pretrain five students: OFA lambda_max 2, 1.5     6 adaptive lambda on PR and IC, three initial
#     and 1; fixed lambda 1; lambda_max 0                   lambdas each (the paper's Fig. 3)
#                                                       7 the figure, the table and the claims
# Usage: bash recipes/mini/run.sh [--stage N] [--stop-stage N]
# Work runs in $JOBS parallel lanes (logs in $EXP/logs/); a line per finished job.
# Smaller runs (the CI test): SPEAKERS=8 HELD_OUT=2 UTTERANCES=60 DEV_UTTS=12 TEST_UTTS=16 TEACHER_STEPS=8 \
#   STEPS=12 OFA_PERIODS=20ms,200ms UNIFORM_PERIODS=200ms NARROW_PERIOD=30ms PROBE_ARGS="--max-epochs 2" \
#   bash recipes/mini/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/mini}
OFACTL=${OFACTL:-.venv/bin/ofactl}
PYTHON=${PYTHON:-$(dirname "$OFACTL")/python}
SPEAKERS=${SPEAKERS:-24}          # voices; HELD_OUT of them for dev and HELD_OUT for test, the rest train
HELD_OUT=${HELD_OUT:-6}
UTTERANCES=${UTTERANCES:-1500}    # LibriSpeech-layout utterances (about 750 train: the teacher learns from 12 voices)
DEV_UTTS=${DEV_UTTS:-200}         # at least this many dev utterances per task
TEST_UTTS=${TEST_UTTS:-500}       # at least this many test utterances per task (95% intervals of +-4.4 points or less)
TEACHER_STEPS=${TEACHER_STEPS:-1000}
STEPS=${STEPS:-600}
OFA_PERIODS=${OFA_PERIODS:-20ms,50ms,100ms,320ms,1000ms}   # the widest model; the fixed model's period is added
UNIFORM_PERIODS=${UNIFORM_PERIODS:-320ms,1000ms}              # fixed-length pooling inside it (claim e)
NARROW_PERIOD=${NARROW_PERIOD:-50ms}                          # in lambda_max 1.5's range (about 20-58 ms)
TASKS=${TASKS:-ks sid ic pr}        # optional, added to the list: asr, sf, st (speech translation, CoVoST 2)
ADAPTIVE_TASKS=${ADAPTIVE_TASKS:-pr ic}
LAMBDA_INITS=${LAMBDA_INITS:-0.4,1.0,1.6}
PROBE_ARGS=${PROBE_ARGS:---max-epochs 20}   # options for every sweep and probe
RECIPE=mini
stage=0
source recipes/stages.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

source recipes/mini/common.sh

if run_stage 0 synth; then
  log "stage 0: synthesise the corpus (espeak-ng, $SPEAKERS voices; >= $TEST_UTTS test, >= $DEV_UTTS dev utterances per task)"
  $OFACTL data synth "$CORPUS" --speakers "$SPEAKERS" --held-out-speakers "$HELD_OUT" --utterances "$UTTERANCES" \
    --dev-utterances "$DEV_UTTS" --test-utterances "$TEST_UTTS"
  done_stage synth
fi

if run_stage 1 teacher; then
  log "stage 1: train the teacher (tiny HuBERT shape; phone CTC + speaker head, $TEACHER_STEPS steps)"
  $OFACTL teacher train "$CORPUS/LibriSpeech" --out "$EXP/teacher" --steps "$TEACHER_STEPS"
  done_stage teacher
fi

if run_stage 2 segments; then
  log "stage 2: guidance segments (teacher layer 4 -> k-means -> DP)"
  $OFACTL segment "$CORPUS/LibriSpeech" --split train-clean-100 --teacher "$TEACHER" --layer 4 \
    --clusters 50 --smoothing 2 --out "$EXP/segments.tsv"
  done_stage segments
fi

pretrain() {  # pretrain DIR [--set KEY=VALUE ...]
  local out=$1; shift
  local resume=""
  [ -f "$out/train_state.pt" ] && resume="--resume"
  $OFACTL pretrain --config recipes/mini/pretrain.yaml --data "$CORPUS/LibriSpeech" --teacher "$TEACHER" \
    --segments "$EXP/segments.tsv" --out "$out" --max-steps "$STEPS" $resume "$@"
}

if run_stage 3 pretrain; then
  log "stage 3: pretrain five students, $STEPS steps each: OFA lambda ~ U[0, 2), U[0, 1.5], U[0, 1];"
  log "         fixed lambda = 1 (Meng et al.); lambda_max = 0 (plain DistilHuBERT)"
  lane pretrain-ofa-lmax2 pretrain "$OFA"
  lane pretrain-ofa-lmax1.5 pretrain "$OFA15" --set lambda_max=1.5
  lane pretrain-ofa-lmax1 pretrain "$OFA1" --set lambda_max=1
  lane pretrain-fixed-lam1 pretrain "$FIXED" --set fixed_lambda=1
  lane pretrain-lmax0 pretrain "$PLAIN" --set lambda_max=0
  lanes_wait
  keep_default_model
  done_stage pretrain
fi

if run_stage 4 calibrate; then
  log "stage 4: calibrate the five models on the train split ($EXP/calibration.png: the widest model's curve)"
  lane calibrate-ofa-lmax2 $OFACTL calibrate "$CORPUS/LibriSpeech" --model "$OFA" --split train-clean-100 \
    --plot "$EXP/calibration.png"
  for model in "$OFA15" "$OFA1" "$FIXED" "$PLAIN"; do
    lane "calibrate-$(basename "$model")" $OFACTL calibrate "$CORPUS/LibriSpeech" --model "$model" \
      --split train-clean-100
  done
  lanes_wait
  done_stage calibrate
fi

sweep() {  # ofactl sweep; exit 3 (some points failed, recorded in the table) is not the recipe's failure
  $OFACTL sweep "$@" || { local rc=$?; [ "$rc" -eq 3 ] || return "$rc"; }
}

sweep_job() {  # sweep_job TASK GROUP: one group of models' points for one task (a lane each, finest first)
  local task=$1 group=$2 p1
  local args=(--task "$task" --data "$CORPUS/${DATA[$task]}" --results "$RESULTS" --lrs "${LR[$task]}"
              $PROBE_ARGS)
  p1=$(fixed_period)
  case $group in
    ofa)  # the widest model over its range and at the fixed model's period; fixed-length pooling in it (claim e)
      sweep "${args[@]}" --model "$OFA" --periods "$OFA_PERIODS,$p1"
      if [ "$task" != pr ]; then sweep "${args[@]}" --model "$OFA" --periods "$UNIFORM_PERIODS" --pooling uniform; fi ;;
    narrow)  # the narrower ranges where the widest model was measured too (claim b)
      sweep "${args[@]}" --model "$OFA15" --periods "20ms,$p1,$NARROW_PERIOD"
      sweep "${args[@]}" --model "$OFA1" --periods "20ms,$p1" ;;
    base)  # the fixed-rate model at its lambda; plain DistilHuBERT at 20 ms
      sweep "${args[@]}" --model "$FIXED" --lambdas 1
      sweep "${args[@]}" --model "$PLAIN" --periods 20ms ;;
  esac
  touch "$EXP/.sweep-$task-$group.done"
}

adaptive_job() {  # adaptive_job TASK INIT: a learned lambda from one initial lambda
  $OFACTL probe --task "$1" --data "$CORPUS/${DATA[$1]}" --model "$OFA" --learn-lambda --lambda-init "$2" \
    --lr "${LR[$1]}" --results "$RESULTS" $PROBE_ARGS
  touch "$EXP/.adaptive-$1-$2.done"
}

# Stages 5 and 6 share one pool of lanes, the longest jobs first: PR's sweeps, the learned lambdas, the rest.
sweep_jobs() {  # sweep_jobs TASK...: launch every group of each task
  for task in "$@"; do
    for group in ofa narrow base; do
      [ -f "$EXP/.sweep-$task-$group.done" ] || lane "sweep-$task-$group" sweep_job "$task" "$group"
    done
  done
}
sweep_now=false; adaptive_now=false
if run_stage 5 sweep; then
  sweep_now=true
  log "stage 5: sweep $TASKS: the widest OFA model over $OFA_PERIODS and the fixed model's $(fixed_period),"
  log "         with fixed-length pooling in it at $UNIFORM_PERIODS; the narrower OFA models at 20 ms, there and"
  log "         $NARROW_PERIOD; fixed lambda 1; lambda_max 0 at 20 ms"
  case " $TASKS " in *" pr "*) sweep_jobs pr ;; esac
fi
if run_stage 6 adaptive; then
  adaptive_now=true
  log "stage 6: adaptive lambda on $ADAPTIVE_TASKS from lambda = $LAMBDA_INITS (learned with the probe)"
  for task in $ADAPTIVE_TASKS; do
    for init in ${LAMBDA_INITS//,/ }; do
      [ -f "$EXP/.adaptive-$task-$init.done" ] || lane "adaptive-$task-$init" adaptive_job "$task" "$init"
    done
  done
fi
if $sweep_now; then
  sweep_jobs $(for t in $TASKS; do if [ "$t" != pr ]; then echo "$t"; fi; done)
fi
lanes_wait
if $sweep_now; then done_stage sweep; fi
if $adaptive_now; then done_stage adaptive; fi

if run_stage 7 plot; then
  log "stage 7: trade-off figure, table and the paper's claims"
  $OFACTL plot "$RESULTS" -o "$EXP/tradeoff.png"
  $OFACTL plot "$RESULTS" --table > "$EXP/table.txt"
  $OFACTL claims "$RESULTS" --widest ofa-lmax2 --narrower ofa-lmax1.5,ofa-lmax1 --fixed fixed-lam1 \
    --plain distilhubert-lmax0 -o "$EXP/claims.md"
  done_stage plot
fi

log "done; the figure is $EXP/tradeoff.png, the table $EXP/table.txt, the claims $EXP/claims.md"

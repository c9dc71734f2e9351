#!/usr/bin/env bash
# After `make demo`: one experiment on why a claim fails at mini scale.  The widest OFA model draws lambda
# uniformly from [0, 2), so each rate gets a small share of the 600 steps; at ~1 s (lambda near 2) it has seen
# about 60.  If the losses at long periods come from that, more steps should recover them: this pretrains the
# same model with $FACTOR times the steps (same data, teacher, segments and seed), sweeps it where the claims
# look (20 ms and the long periods, CIF and fixed-length pooling in the model), and compares it with the
# demo's model pairwise and against the claims.  About 6 minutes on 2 cores.
# Usage: bash recipes/mini/why.sh            (outputs in $EXP: ofa-lmax2-x$FACTOR, why.md)
set -euo pipefail
cd "$(dirname "$0")/../.."

EXP=${EXP:-exp/mini}
OFACTL=${OFACTL:-.venv/bin/ofactl}
PYTHON=${PYTHON:-$(dirname "$OFACTL")/python}
STEPS=${STEPS:-600}
FACTOR=${FACTOR:-2}
PERIODS=${PERIODS:-20ms,320ms,1000ms}
UNIFORM_PERIODS=${UNIFORM_PERIODS:-320ms,1000ms}
TASKS=${TASKS:-ks sid ic}
PROBE_ARGS=${PROBE_ARGS:---max-epochs 20}
RECIPE=mini-why
stage=0
source recipes/stages.sh "$@"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

for done in synth teacher segments sweep; do
  [ -f "$EXP/.$done.done" ] || { echo "run make demo (recipes/mini/run.sh) first: $EXP/.$done.done is missing" >&2; exit 2; }
done
source recipes/mini/common.sh
NAME="ofa-lmax2-x$FACTOR"
LONGER="$EXP/$NAME"

if run_stage 1 why-pretrain; then
  log "pretrain the widest model with $FACTOR x $STEPS steps"
  resume=""
  [ -f "$LONGER/train_state.pt" ] && resume="--resume"
  $OFACTL pretrain --config recipes/mini/pretrain.yaml --data "$CORPUS/LibriSpeech" --teacher "$TEACHER" \
    --segments "$EXP/segments.tsv" --out "$LONGER" --max-steps $((FACTOR * STEPS)) $resume
  $OFACTL calibrate "$CORPUS/LibriSpeech" --model "$LONGER" --split train-clean-100
  keep_default_model
  done_stage why-pretrain
fi

P1=$(fixed_period)  # where claim (a) compares

why_sweep() {  # why_sweep TASK
  local args=(--task "$1" --data "$CORPUS/${DATA[$1]}" --results "$RESULTS" --lrs "${LR[$1]}" $PROBE_ARGS)
  $OFACTL sweep "${args[@]}" --model "$LONGER" --periods "$PERIODS,$P1" || [ $? -eq 3 ]
  $OFACTL sweep "${args[@]}" --model "$LONGER" --periods "$UNIFORM_PERIODS" --pooling uniform || [ $? -eq 3 ]
}

if run_stage 2 why-sweep; then
  log "sweep $TASKS at $PERIODS,$P1 (and fixed-length pooling at $UNIFORM_PERIODS)"
  for task in $TASKS; do lane "why-sweep-$task" why_sweep "$task"; done
  lanes_wait
  done_stage why-sweep
fi

if run_stage 3 why-compare; then
  log "compare: $FACTOR x the steps against the demo's model, and the claims on the longer-trained model"
  {
    echo "$NAME ($FACTOR x $STEPS steps) against ofa-lmax2 ($STEPS steps), each row a paired bootstrap (\`ofactl compare\`):"
    echo
    "$PYTHON" - "$RESULTS" "$NAME" "$P1" $TASKS <<'PY'
import sys

from ofactl.compare import compare_runs

results, name, p1, tasks = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print("| task | target period | ofa-lmax2 | " + name + " | difference [95% CI] | verdict |")
print("|---|---|---|---|---|---|")
for task in tasks:
    for period in ("20ms", p1, "320ms", "1000ms"):
        c = compare_runs(results, task, f"{name}@{period}", f"ofa-lmax2@{period}")
        d = c.difference
        print(f"| {task.upper()} | {period} | {100 * d.b:.1f} | {100 * d.a:.1f} | {100 * d.diff:+.1f} "
              f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] | {c.verdict} |")
PY
    echo
    echo "The claims with $NAME as the widest model (\`ofactl claims\`):"
    echo
    $OFACTL claims "$RESULTS" --widest "$NAME" --fixed fixed-lam1 --plain distilhubert-lmax0
  } > "$EXP/why.md"
  cat "$EXP/why.md"
  done_stage why-compare
fi

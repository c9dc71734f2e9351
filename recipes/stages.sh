# Shared by the recipes (source it after setting RECIPE, EXP and a default `stage`):
# parses --stage/--stop-stage, and defines log, run_stage and done_stage.
#   run_stage N NAME   true when N is within [stage, stop_stage] and $EXP/.NAME.done is absent
#   done_stage NAME    marks the stage done
stop_stage=100
while [ $# -gt 0 ]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    *) echo "unknown argument $1 (expected --stage N, --stop-stage N)" >&2; exit 2 ;;
  esac
done

log() { echo -e "$(date '+%Y-%m-%d %H:%M:%S') [$RECIPE] $*"; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] && [ ! -f "$EXP/.$2.done" ]; }
done_stage() { touch "$EXP/.$1.done"; }
mkdir -p "$EXP"

# Parallel lanes: `lane NAME CMD ARGS...` runs CMD in the background (at most $JOBS at once, each with
# $LANE_THREADS torch threads), its output in $EXP/logs/NAME.log; `lanes_wait` waits for every lane and stops
# the recipe (showing the log's tail) if one failed.  On a 2-core machine two one-thread processes do more
# work than one two-thread process: the demo's models are small, and small operations scale poorly over threads.
JOBS=${JOBS:-2}
LANE_THREADS=${LANE_THREADS:-1}
LANE_PIDS=()
declare -A LANE_NAMES=() LANE_START=()
lane() {
  local name=$1; shift
  while [ ${#LANE_PIDS[@]} -ge "$JOBS" ]; do lane_reap; done
  mkdir -p "$EXP/logs"
  ( export OMP_NUM_THREADS=$LANE_THREADS; "$@" ) > "$EXP/logs/$name.log" 2>&1 &
  LANE_PIDS+=($!)
  LANE_NAMES[$!]=$name
  LANE_START[$!]=$SECONDS
}
lane_reap() {
  local pid rc=0
  wait -n -p pid "${LANE_PIDS[@]}" || rc=$?
  local rest=()
  for p in "${LANE_PIDS[@]}"; do [ "$p" != "$pid" ] && rest+=("$p"); done
  LANE_PIDS=("${rest[@]}")
  local name=${LANE_NAMES[$pid]}
  if [ "$rc" -ne 0 ]; then
    log "FAILED: $name (exit $rc); the end of $EXP/logs/$name.log:"
    tail -n 20 "$EXP/logs/$name.log" >&2
    for p in "${LANE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    exit "$rc"
  fi
  log "  done: $name ($((SECONDS - LANE_START[$pid])) s)"
}
lanes_wait() { while [ ${#LANE_PIDS[@]} -gt 0 ]; do lane_reap; done; }

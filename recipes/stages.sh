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
# While lanes run, a heartbeat prints every $HEARTBEAT seconds (default 60) the newest progress line of each lane
# log written to since the last beat: ofactl writes one progress line (with the time left) every 30 s to a log.
HEARTBEAT=${HEARTBEAT:-60}
HEARTBEAT_PID=""
heartbeat() {  # runs in the background: a failure here must never stop the recipe
  set +e +o pipefail
  local stamp="$EXP/logs/.heartbeat" f line
  touch "$stamp"
  while sleep "$HEARTBEAT" > /dev/null 2>&1; do  # sleep must not hold a pipe the caller reads to its end
    for f in "$EXP"/logs/*.log; do
      [ "$f" -nt "$stamp" ] || continue
      line=$(tail -c 4096 "$f" | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -n 1)
      [ -n "$line" ] && log "  $(basename "$f" .log): $line"
    done
    touch "$stamp"
  done
}
heartbeat_stop() { [ -n "$HEARTBEAT_PID" ] && kill "$HEARTBEAT_PID" 2>/dev/null; HEARTBEAT_PID=""; return 0; }
trap heartbeat_stop EXIT
lane() {
  local name=$1; shift
  while [ ${#LANE_PIDS[@]} -ge "$JOBS" ]; do lane_reap; done
  if [ -z "$HEARTBEAT_PID" ] && [ "$HEARTBEAT" -gt 0 ]; then
    mkdir -p "$EXP/logs"; heartbeat & HEARTBEAT_PID=$!
    disown "$HEARTBEAT_PID"  # not a job: `wait -n` in lane_reap must only ever see the lanes
  fi
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
lanes_wait() { while [ ${#LANE_PIDS[@]} -gt 0 ]; do lane_reap; done; heartbeat_stop; }

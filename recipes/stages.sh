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

# Shared by recipes/mini/run.sh and why.sh (source it after EXP, OFACTL and PYTHON are set).
CORPUS="$EXP/corpus"
TEACHER="$EXP/teacher/teacher.pth"
OFA="$EXP/ofa-lmax2"
OFA15="$EXP/ofa-lmax1.5"
OFA1="$EXP/ofa-lmax1"
FIXED="$EXP/fixed-lam1"
PLAIN="$EXP/distilhubert-lmax0"
RESULTS="$EXP/results.csv"
declare -A DATA=([ks]=speech_commands_v0.01 [sid]=VoxCeleb1 [ic]=fluent_speech_commands_dataset [pr]=LibriSpeech
                 [asr]=LibriSpeech [sf]=SNIPS [st]=CoVoST2)
# one probe learning rate per task (the best of x0.1 / x1 / x10 on dev in a pilot run): fewer, more useful points;
# the optional tasks (asr, sf, st) take their task's default rate
declare -A LR=([ks]=1e-2 [sid]=1e-2 [ic]=1e-2 [pr]=1e-1 [asr]=1e-3 [sf]=1e-3 [st]=2e-3)

# the fixed-rate model's frame period (its calibration at lambda 1): where the OFA models meet it (claims a, b)
fixed_period() {
  "$PYTHON" -c "import sys; from ofactl.calibrate import Calibration; from ofactl.period import FramePeriod; \
print(FramePeriod(round(Calibration.load(sys.argv[1]).period_for(1.0).ms, 1)))" "$FIXED"
}

# every pretrain records itself as the workspace model (ofactl.toml); the demo's widest model stays the default
keep_default_model() {  # the widest OFA model is the workspace default after the demo
  $OFACTL use "$OFA" > /dev/null
}

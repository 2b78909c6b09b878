#!/usr/bin/env bash
# Every GPU figure, on a CUDA machine:
#     bash benchmarks/gpu.sh [LOG_DIR [STEP...]]
# Steps (default: executors trial tests compile, in that order, most wanted first: issue
# 9's two figures, then the tests, which a short deadline may cut, then torch.compile):
#   executors  whole runs, 8 losses x 1 seed: 1 loss alone, sequential, fused,
#              --trials-per-gpu 2/4, with GPU memory per trial;
#   trial      one trial vs the best plain PyTorch loop (small preset, 128 px, bf16);
#   tests      the CUDA tests (tests/test_cuda.py: each loss CUDA vs CPU, a bf16 trial,
#              a fused step and group, no host sync, whole runs fused / sequential /
#              --trials-per-gpu 2 / loader processes, under Ray where it is installed);
#   compile    the plain loop under torch.compile (default, and CUDA graphs), against
#              the eager plain loop and losscmp: is a --compile flag worth building?
# Logs go to LOG_DIR (default: $OUT where it is set, as on a lent device machine, whose
# command returns only what it writes there, at most 8 files; else benchmarks/gpu-logs):
# gpu.txt (the machine, the checks, each step's exit status and seconds), cuda-tests.log,
# executors.log and .json, trial.log, trial-compile-MODE.log. Each step goes on if one
# fails; the script exits 1 if any step failed or was skipped. Wheels in .whl/ (`make
# gpu-wheels`: segmentation-models-pytorch, which a bare GPU image lacks) are installed
# first; then one check imports what every step needs, builds the model and asks torch
# for the GPU, and the script stops there (exit 1, one line saying why) if that fails.
# nvidia-smi (30 s), the install (120 s) and the check (180 s) have caps of their own, cut
# to the time left like a step's: a GPU or disk that hangs them stops the script there.
# The script ends within GPU_DEADLINE_S seconds (default 570: a lent machine kills a
# command at 600): each step's cap is cut to the time left, and a step with under 30 s
# left is skipped. A step still running GRACE (10) seconds after its cap's SIGTERM is
# killed: losscmp's run (also inside the tests' whole runs) turns SIGTERM into a Python
# exception, which never comes while the process waits on a hung GPU, and timeout alone
# would wait for it past the deadline. It ends by printing every step's status and
# figures together (a lent machine's reply keeps only the end of the output).
# GPU_DRY_RUN=1 runs every step on the CPU at tiny sizes (3 losses, tiny model, 32 px,
# 1 epoch; torch.compile with the 'eager' backend, which traces without generating
# code, in one mode): it checks the script end to end, in about a minute (80 s on 2 busy
# cores), and measures nothing.
# PYTHON (default python3) is the interpreter every step runs; GPU_WHEELS (default .whl)
# the folder of wheels to install.
set -u -o pipefail
LOGS=${1:-${OUT:-benchmarks/gpu-logs}}
shift || true
STEPS=${*:-executors trial tests compile}
DEADLINE=${GPU_DEADLINE_S:-570}
GRACE=10  # seconds between a step's SIGTERM at its cap and its SIGKILL
PYTHON=${PYTHON:-python3}
DRY=${GPU_DRY_RUN:-0}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
SUMMARY=$LOGS/gpu.txt
: >"$SUMMARY"

stop() {  # stop MESSAGE: before any step, nothing worth running
    echo "gpu.sh: $*" | tee -a "$SUMMARY" >&2
    exit 1
}
too_late() {  # under 30 s left: not worth starting a step
    ((DEADLINE - SECONDS < 30))
}
cap() {  # cap SECONDS: the smaller of SECONDS and the time left, never 0 (timeout 0: no limit)
    local left=$((DEADLINE - SECONDS))
    ((left < 1)) && left=1
    echo $(($1 < left ? $1 : left))
}

for step in $STEPS; do  # a typo found now, not after minutes of the steps before it
    case $step in
    tests | executors | trial | compile) ;;
    *) stop "unknown step '$step' (tests, executors, trial, compile)" ;;
    esac
done

if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    echo "GPU_DRY_RUN=1: every step on the CPU at tiny sizes; no figure is a GPU's" \
        | tee -a "$SUMMARY"
    EXECUTORS=(--device cpu --model tiny --image-size 32 --epochs 1 --repeats 1
        --losses dice,lovasz,boundary --dataset "synthetic(fg_fraction=0.05,n_train=16,n_val=8,n_test=8)")
    TRIAL=(--device cpu --preset tiny --image-size 32 --epochs 1 --repeats 1)
    COMPILE=(--repeats 1 --compile-backend eager)
    MODES=default  # the eager backend has no modes: one is enough to check the step
else
    DEVICE=cuda
    timeout -k "$GRACE" "$(cap 30)" nvidia-smi \
        --query-gpu=name,memory.total,driver_version --format=csv 2>&1 \
        | tee -a "$SUMMARY" || stop "nvidia-smi failed: no NVIDIA GPU or driver here (or it hung)"
    # --side-cap: a run several times the ~1 minute the slowest side should take is hung.
    EXECUTORS=(--device cuda --epochs "${GPU_EPOCHS:-5}" --repeats "${GPU_REPEATS:-1}"
        --side-cap 150)
    TRIAL=(--device cuda --preset small --image-size 128 --epochs 5 --repeats 3)
    COMPILE=(--repeats 2)
    MODES="default reduce-overhead"
fi

WHEELS=${GPU_WHEELS:-.whl}
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    SITE=${WHL_SITE:-/tmp/site}
    timeout -k "$GRACE" "$(cap 120)" "$PYTHON" -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl 2>&1 \
        | tee -a "$SUMMARY" \
        || stop "installing $WHEELS/*.whl into $SITE failed or hung (pip's words above)"
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

# What every step needs, checked in seconds rather than found missing minutes in.
CHECK=$(cat <<'EOF'
import sys

import torch

device = sys.argv[1]
print("torch", torch.__version__, "cuda", torch.version.cuda)
try:
    import segmentation_models_pytorch as smp
except ImportError as error:
    sys.exit(f"{error}: run 'make gpu-wheels' where pip works, and carry .whl")
import losscmp.cli  # noqa: F401 (typer, rich, pandas, matplotlib: the run command)
import losscmp.fused  # noqa: F401
from losscmp.model import MODEL_PRESETS, build_model

print("segmentation-models-pytorch", smp.__version__, "from", smp.__path__[0])
build_model(MODEL_PRESETS["small"], 1, None, seed=0)  # smp and timm agree
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device")
    name = torch.cuda.get_device_name()
    capability = torch.cuda.get_device_capability()
    print(name, "capability", capability, "bf16", torch.cuda.is_bf16_supported())
EOF
)
timeout -k "$GRACE" "$(cap 180)" "$PYTHON" -c "$CHECK" "$DEVICE" 2>&1 | tee -a "$SUMMARY"
checked=${PIPESTATUS[0]}
((checked == 124 || checked == 137)) \
    && stop "the check before the steps hung and was cut at its time cap (at $SECONDS s)"
((checked == 0)) || stop "the check before the steps failed (its last line above says why)"

FAILED=0
record() {  # record STEP STATUS START: a line in gpu.txt; 124 (137: killed) is a step's cap
    local how="exit $2"
    (($2 == 124)) && how="cut at its time cap (exit 124)"
    (($2 == 137)) && how="killed $GRACE s after its time cap (exit 137)"
    echo "step $1: $how, $((SECONDS - $3)) s" | tee -a "$SUMMARY"
    (($2 == 0)) || FAILED=1
}
skipped() {
    echo "step $1: skipped, no time left (GPU_DEADLINE_S=$DEADLINE)" | tee -a "$SUMMARY" >&2
    FAILED=1
}

for step in $STEPS; do
    if too_late; then skipped "$step"; continue; fi
    start=$SECONDS
    case $step in
    tests)
        timeout -k "$GRACE" "$(cap 240)" "$PYTHON" -m pytest -p no:cacheprovider \
            -o addopts="" -q -rs -m cuda tests/test_cuda.py 2>&1 \
            | tee "$LOGS/cuda-tests.log" | tail -40
        record tests "${PIPESTATUS[0]}" "$start" ;;
    executors)
        timeout -k "$GRACE" "$(cap 420)" "$PYTHON" benchmarks/executors.py gpu \
            "${EXECUTORS[@]}" --json "$LOGS/executors.json" 2>&1 | tee "$LOGS/executors.log"
        record executors "${PIPESTATUS[0]}" "$start" ;;
    trial)
        timeout -k "$GRACE" "$(cap 150)" "$PYTHON" benchmarks/trial.py "${TRIAL[@]}" 2>&1 \
            | tee "$LOGS/trial.log"
        record trial "${PIPESTATUS[0]}" "$start" ;;
    compile)
        for mode in $MODES; do
            if too_late; then skipped "compile $mode"; break; fi
            start=$SECONDS
            timeout -k "$GRACE" "$(cap 280)" "$PYTHON" benchmarks/trial.py "${TRIAL[@]}" \
                "${COMPILE[@]}" --compile "$mode" 2>&1 | tee "$LOGS/trial-compile-$mode.log"
            record "compile $mode" "${PIPESTATUS[0]}" "$start"
        done ;;
    esac
done

# The figures again, together: a lent machine's reply keeps only the end of the output.
echo "=== summary (all of it in $LOGS)"
grep '^step ' "$SUMMARY"
[[ -f $LOGS/cuda-tests.log ]] && tail -n 1 "$LOGS/cuda-tests.log"
if [[ -f $LOGS/executors.log ]]; then  # each run's line, then the table (if it got there)
    grep -E ' run [0-9]+: ' "$LOGS/executors.log"
    sed -n '/^side /,$p' "$LOGS/executors.log"
fi
for log in "$LOGS"/trial.log "$LOGS"/trial-compile-*.log; do
    [[ -f $log ]] && echo "${log##*/}:" && grep -E 'throughput|target|warm-up' "$log"
done
exit $FAILED

#!/usr/bin/env bash
# Every GPU figure, on a CUDA machine:
#     bash benchmarks/gpu.sh [LOG_DIR [STEP...]]
# Steps (default: tests executors trial compile, in that order, most wanted first):
#   tests      the CUDA tests (tests/test_cuda.py: each loss CUDA vs CPU, a bf16 trial,
#              a fused step and group, no host sync, whole runs fused / sequential /
#              --trials-per-gpu 2, under Ray where it is installed);
#   executors  whole runs, 8 losses x 1 seed: 1 loss alone, sequential, fused,
#              --trials-per-gpu 2/4, with GPU memory per trial;
#   trial      one trial vs the best plain PyTorch loop (small preset, 128 px, bf16);
#   compile    the plain loop under torch.compile (default, and CUDA graphs), against
#              the eager plain loop and losscmp: is a --compile flag worth building?
# Logs go to LOG_DIR (default: $OUT where it is set, as on a lent device machine, whose
# command returns only what it writes there; else benchmarks/gpu-logs); each step goes
# on if one fails. Wheels in .whl/ (`make gpu-wheels`: segmentation-models-pytorch,
# which a bare GPU image lacks) are installed first. The script ends within
# GPU_DEADLINE_S seconds (default 570: a lent machine kills a command at 600): each
# step's cap is cut to the time left, and a step with under 30 s left is skipped.
set -u
LOGS=${1:-${OUT:-benchmarks/gpu-logs}}
shift || true
STEPS=${*:-tests executors trial compile}
DEADLINE=${GPU_DEADLINE_S:-570}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
    SITE=${WHL_SITE:-/tmp/site}
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl && export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$LOGS/gpu.txt"
if ! python3 -c "import segmentation_models_pytorch, losscmp.fused" >>"$LOGS/gpu.txt" 2>&1; then
    tail -3 "$LOGS/gpu.txt"
    echo "losscmp or segmentation_models_pytorch does not import: run 'make gpu-wheels'" \
        "here and carry .whl" >&2
    exit 1
fi

too_late() {  # under 30 s left: not worth starting a step
    ((DEADLINE - SECONDS < 30))
}
cap() {  # cap SECONDS: the smaller of SECONDS and the time left, never 0 (timeout 0: no limit)
    local left=$((DEADLINE - SECONDS))
    ((left < 1)) && left=1
    echo $(($1 < left ? $1 : left))
}

TRIAL=(benchmarks/trial.py --device cuda --preset small --image-size 128 --epochs 5 --repeats 3)
for step in $STEPS; do
    if too_late; then echo "no time left for '$step' (GPU_DEADLINE_S=$DEADLINE)" >&2; continue; fi
    case $step in
    tests)
        timeout "$(cap 240)" python3 -m pytest -p no:cacheprovider -o addopts="" -q -m cuda \
            tests/test_cuda.py 2>&1 | tee "$LOGS/cuda-tests.log" | tail -25 ;;
    executors)
        timeout "$(cap 420)" python3 benchmarks/executors.py gpu --epochs "${GPU_EPOCHS:-5}" \
            --repeats "${GPU_REPEATS:-1}" --json "$LOGS/executors.json" 2>&1 \
            | tee "$LOGS/executors.log" ;;
    trial)
        timeout "$(cap 150)" python3 "${TRIAL[@]}" 2>&1 | tee "$LOGS/trial.log" ;;
    compile)
        for mode in default reduce-overhead; do
            if too_late; then echo "no time left for --compile $mode" >&2; break; fi
            timeout "$(cap 280)" python3 "${TRIAL[@]}" --repeats 2 --compile "$mode" 2>&1 \
                | tee "$LOGS/trial-compile-$mode.log"
        done ;;
    *)
        echo "unknown step '$step' (tests, executors, trial, compile)" >&2 ;;
    esac
done

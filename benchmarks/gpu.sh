#!/usr/bin/env bash
# Every GPU figure, on a CUDA machine with losscmp importable:
#     bash benchmarks/gpu.sh [LOG_DIR [STEP...]]
# Steps (default: tests trial executors compile, in that order):
#   tests      the CUDA tests (tests/test_cuda.py: each loss CUDA vs CPU, a bf16 trial,
#              a fused step and group, no host sync, whole runs fused / sequential /
#              --trials-per-gpu 2, under Ray where it is installed);
#   trial      one trial vs the best plain PyTorch loop (small preset, 128 px, bf16);
#   executors  whole runs, 8 losses x 1 seed: 1 loss alone, sequential, fused,
#              --trials-per-gpu 2/4, with GPU memory per trial;
#   compile    the plain loop under torch.compile (default, and CUDA graphs), against
#              the eager plain loop and losscmp: is a --compile flag worth building?
# Logs go to LOG_DIR (default: benchmarks/gpu-logs); each step goes on if one fails.
# Each step is capped below; where one command may run 10 minutes at most, run the
# steps in two calls: `tests trial executors`, then `compile`.
set -u
LOGS=${1:-benchmarks/gpu-logs}
shift || true
STEPS=${*:-tests trial executors compile}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$LOGS/gpu.txt"
TRIAL=(benchmarks/trial.py --device cuda --preset small --image-size 128 --epochs 5 --repeats 3)
for step in $STEPS; do
    case $step in
    tests)
        timeout 240 python3 -m pytest -p no:cacheprovider -o addopts="" -q -m cuda \
            tests/test_cuda.py 2>&1 | tee "$LOGS/cuda-tests.log" | tail -25 ;;
    trial)
        timeout 150 python3 "${TRIAL[@]}" 2>&1 | tee "$LOGS/trial.log" ;;
    executors)
        timeout 420 python3 benchmarks/executors.py gpu --epochs "${GPU_EPOCHS:-5}" \
            --repeats "${GPU_REPEATS:-1}" --json "$LOGS/executors.json" 2>&1 \
            | tee "$LOGS/executors.log" ;;
    compile)
        for mode in default reduce-overhead; do
            timeout 280 python3 "${TRIAL[@]}" --repeats 2 --compile "$mode" 2>&1 \
                | tee "$LOGS/trial-compile-$mode.log"
        done ;;
    *)
        echo "unknown step '$step' (tests, trial, executors, compile)" >&2 ;;
    esac
done

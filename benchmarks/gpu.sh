#!/usr/bin/env bash
# Every GPU figure in one command, on a CUDA machine with losscmp importable:
#     bash benchmarks/gpu.sh [LOG_DIR]
# 1. the CUDA tests (tests/test_cuda.py: each loss CUDA vs CPU, a trial, a fused group,
#    whole runs fused / sequential / --trials-per-gpu 2);
# 2. one trial vs the best plain PyTorch loop (small preset, 128 px, bf16);
# 3. whole runs, 8 losses x 1 seed: 1 loss alone, sequential, fused, --trials-per-gpu 2/4.
# Logs go to LOG_DIR (default: benchmarks/gpu-logs); each step goes on if one fails.
set -u
LOGS=${1:-benchmarks/gpu-logs}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$LOGS/gpu.txt"
timeout 240 python3 -m pytest -p no:cacheprovider -o addopts="" -q -m cuda tests/test_cuda.py \
    2>&1 | tee "$LOGS/cuda-tests.log" | tail -25
timeout 150 python3 benchmarks/trial.py --device cuda --preset small --image-size 128 \
    --epochs 5 --repeats 3 2>&1 | tee "$LOGS/trial.log"
timeout 420 python3 benchmarks/executors.py gpu --epochs "${GPU_EPOCHS:-5}" \
    --repeats "${GPU_REPEATS:-1}" --json "$LOGS/executors.json" 2>&1 | tee "$LOGS/executors.log"

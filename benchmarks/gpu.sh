#!/usr/bin/env bash
# The GPU check, one script for one short lease of a GPU machine:
#   benchmarks/gpu.sh DATA_DIR OUT_DIR
# 1. the CUDA-only tests (graphed training matches eager training);
# 2. every lab task at its lab settings, all in one process, as a user runs them (CUDA graphs on,
#    the default): OUT_DIR/gpu-graphs.json;
# 3. the same without CUDA graphs, for the comparison: OUT_DIR/gpu-eager.json;
# 4. the best configs of air quality and ElectricDevices (cosine schedules, graphed
#    too): OUT_DIR/gpu-best.json.
# Each step has its own time limit, so a slow one still leaves the earlier results.
set -uo pipefail
data=${1:?usage: benchmarks/gpu.sh DATA_DIR OUT_DIR}
out=${2:?usage: benchmarks/gpu.sh DATA_DIR OUT_DIR}
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
RNNLAB_TEST_DATA="$data" timeout 150 python3 -m pytest -q tests/test_graphs.py 2>&1 | tee "$out/tests.log"
timeout 180 python3 benchmarks/lab_tasks.py --device cuda --data-dir "$data" \
    --json "$out/gpu-graphs.json" 2>&1 | tee "$out/graphs.log"
timeout 180 python3 benchmarks/lab_tasks.py --device cuda --data-dir "$data" \
    --set train.cuda_graphs=false --json "$out/gpu-eager.json" 2>&1 | tee "$out/eager.log"
timeout 180 python3 benchmarks/lab_tasks.py --device cuda --data-dir "$data" --best \
    --tasks air-quality,electric-devices --json "$out/gpu-best.json" 2>&1 | tee "$out/best.log"

#!/usr/bin/env bash
# The full-scale prototypical network on the lent GPU machine (Python 3.12 + JAX, no TensorFlow).
# Needs, beside the checkout: .whl/ (keras 3.15.1, namex 0.1.0, optree 0.20.0 cp312, platformdirs)
# and .device_data/omniglot/ (the two zips and splits_vinyals/), both carried to the machine.
# Records go to $OUT (the device tool's folder) or, elsewhere, to results/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
OUT=${OUT:-results}
export PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=jax MLBOOK_DATA=$PWD/.device_data \
  MLBOOK_CACHE=/tmp/mlbook-cache MLBOOK_RESULTS=$OUT PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
# 1. Throughput of the training step: episodes per compiled step 1, 16, 64 (60-way 1-shot).
timeout 120 python3 scripts/bench_protonet.py --mbs 1 16 64 --episodes 2000 --repeats 2 \
  2>&1 | grep -v "^I0000" | tee "$OUT/bench.txt"
# 2. The paper's recipe (metric.SETTINGS["full"]): 60-way, one episode per step, halving the
#    learning rate every 2000 episodes, model selection on val, a 5-shot model for 5-shot tests.
timeout 400 python3 -m mlbook_utils.reproduce protonet --scale full 2>&1 \
  | grep -v "^I0000" | tr '\r' '\n' | grep -v "episode/s\]" | tee "$OUT/full.txt"

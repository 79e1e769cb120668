#!/usr/bin/env bash
# Chapters 7.1, 7.2 and 8.1 at `full` scale on the lent GPU machine (Python 3.12 + JAX, no
# TensorFlow), in one call of about 2 x BUDGET + 3 minutes:
#   1. Meta-SGD at the four Omniglot settings (one process each), Reptile at 5-way and 20-way,
#      the sinusoid experiments of both and 8.1's two experiments, all at once, each model
#      capped at BUDGET seconds (8.1's at GA_BUDGET, as they train 16 and 20 models in turn);
#   2. then the cost comparison (Reptile, first-order and second-order MAML, one process),
#      each model capped at BUDGET seconds.
# The papers' recipes are 60,000 (Meta-SGD, MAML's) and 100,000 or 200,000 (Reptile) meta-steps;
# what a cap of BUDGET allows is in each record (train_meta_steps, train_wall_s) and log.
# Needs, beside the checkout: .whl/ (keras 3.15.1, namex 0.1.0, optree 0.20.0 cp312,
# typing_extensions) and .device_data/omniglot (as in ../shared/data), both carried to the
# machine. Records and logs go to $OUT (the device
# tool's folder), one folder per method; elsewhere to _gpu_run/. Test it on a CPU first:
#   PYTHON=.venv-jax/bin/python SCALE=quick BUDGET=5 TIMEOUT=600 \
#     MLBOOK_DATA=../shared/data bash scripts/gpu_full_run_ch07_08.sh
set -uo pipefail
PYTHON=${PYTHON:-python3}
if [ -d .whl ] && ! KERAS_BACKEND=jax "$PYTHON" -c "import keras" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
OUT=${OUT:-_gpu_run}
SCALE=${SCALE:-full}
BUDGET=${BUDGET:-420}           # seconds of training per model
TIMEOUT=${TIMEOUT:-560}         # hard limit per method, training and testing
GA_BUDGET=${GA_BUDGET:-20}      # seconds per model of 8.1: 16 on Omniglot, 20 on sinusoids
mkdir -p "$OUT"
if [ -d .device_data ]; then export MLBOOK_DATA=$PWD/.device_data; fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD KERAS_BACKEND=jax MLBOOK_CACHE=/tmp/mlbook-cache \
  PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
clean() { grep -v "^I0000\|^W0000\|^WARNING: All log" | tr '\r' '\n' | grep -v "it/s\]\|s/it\]"; }

export XLA_PYTHON_CLIENT_PREALLOCATE=false MLBOOK_CONCURRENT_RUNS=8
run() {  # [RUN_BUDGET=S] run NAME ARGS...: the runner with its own results folder and log
  local name=$1 budget=${RUN_BUDGET:-$BUDGET}; shift
  mkdir -p "$OUT/$name"
  ( MLBOOK_RESULTS="$OUT/$name" timeout "$TIMEOUT" "$PYTHON" -m mlbook_utils.reproduce "$@" \
      --scale "$SCALE" --time-budget "$budget" 2>&1 | clean > "$OUT/$name/log.txt"
    echo "$name: exit ${PIPESTATUS[0]}" ) &
}
start=$(date +%s)
run meta-sgd-5w1s meta-sgd --n-way 5 --k-shot 1
run meta-sgd-5w5s meta-sgd --n-way 5 --k-shot 5
run meta-sgd-20w1s meta-sgd --n-way 20 --k-shot 1
run meta-sgd-20w5s meta-sgd --n-way 20 --k-shot 5
run reptile-5w reptile --n-way 5
run reptile-20w reptile --n-way 20
run meta-sgd-sinusoid meta-sgd-sinusoid
run reptile-sinusoid reptile-sinusoid
# 8.1 trains 16 models (seeds x arms, clean and noisy) one after another: GA_BUDGET each.
RUN_BUDGET=$GA_BUDGET run gradient-agreement gradient-agreement
RUN_BUDGET=$GA_BUDGET run gradient-agreement-sinusoid gradient-agreement-sinusoid
wait
echo "part 1: $(( $(date +%s) - start )) s"
export MLBOOK_CONCURRENT_RUNS=1
run reptile-cost reptile-cost
wait
echo "all methods: $(( $(date +%s) - start )) s"
tail -n 4 "$OUT"/*/log.txt

#!/usr/bin/env bash
# Chapter 6.1 at `full` scale on the lent GPU machine (Python 3.12 + JAX, no TensorFlow), in one
# call of about BUDGET + 3 minutes:
#   1. the meta-step benchmark (time and XLA's memory per meta-step of each method), alone;
#   2. MAML at the four Omniglot settings (the reference code's recipe, one process each, all
#      at once), first-order MAML, ANIL, CAML and ADML at 5-way 1-shot, and the two sinusoid
#      experiments, each capped at BUDGET seconds of training per model.
# The reference recipe is 60,000 meta-steps per Omniglot setting; what a cap of BUDGET allows is
# in each record (train_meta_steps, train_wall_s) and log. Needs, beside the checkout: .whl/
# (keras 3.15.1, namex 0.1.0, optree 0.20.0 cp312, typing_extensions) and .device_data/omniglot
# (as in ../shared/data), both carried to the machine. Records and logs go to $OUT (the device
# tool's folder), one folder per method; elsewhere to _gpu_run/. Test it on a CPU first:
#   PYTHON=.venv-jax/bin/python SCALE=quick BUDGET=5 BENCH_STEPS=2 TIMEOUT=600 \
#     MLBOOK_DATA=../shared/data bash scripts/gpu_full_run_ch06.sh
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
BENCH_STEPS=${BENCH_STEPS:-50}
mkdir -p "$OUT"
if [ -d .device_data ]; then export MLBOOK_DATA=$PWD/.device_data; fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD KERAS_BACKEND=jax MLBOOK_CACHE=/tmp/mlbook-cache \
  PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
clean() { grep -v "^I0000\|^W0000\|^WARNING: All log" | tr '\r' '\n' | grep -v "it/s\]\|s/it\]"; }

start=$(date +%s)
timeout 180 "$PYTHON" scripts/bench_maml.py --scale "$SCALE" --steps "$BENCH_STEPS" \
  --repeats 2 2>&1 | clean | tee "$OUT/bench_maml.txt"
echo "benchmark: $(( $(date +%s) - start )) s"

export XLA_PYTHON_CLIENT_PREALLOCATE=false MLBOOK_CONCURRENT_RUNS=9
run() {  # run NAME ARGS...: the runner with its own results folder and log
  local name=$1; shift
  mkdir -p "$OUT/$name"
  ( MLBOOK_RESULTS="$OUT/$name" timeout "$TIMEOUT" "$PYTHON" -m mlbook_utils.reproduce "$@" \
      --scale "$SCALE" --time-budget "$BUDGET" 2>&1 | clean > "$OUT/$name/log.txt"
    echo "$name: exit ${PIPESTATUS[0]}" ) &
}
start=$(date +%s)
run maml-5w1s maml --n-way 5 --k-shot 1
run maml-5w5s maml --n-way 5 --k-shot 5
run maml-20w1s maml --n-way 20 --k-shot 1
run maml-20w5s maml --n-way 20 --k-shot 5
run maml-first-order maml-first-order
run anil anil
run caml caml
run adml adml
run sinusoid maml-sinusoid
wait
run caml-sinusoid caml-sinusoid
wait
echo "all methods: $(( $(date +%s) - start )) s"
tail -n 4 "$OUT"/*/log.txt

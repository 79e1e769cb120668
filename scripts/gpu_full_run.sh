#!/usr/bin/env bash
# Every method of chapters 1 to 4 (and 4.2's pretrained baseline, 5.1's NTM) at `full` scale on the lent
# GPU machine (Python 3.12 + JAX, no TensorFlow), in one call of about 8 minutes:
#   1. the protonet training-step benchmark, alone on the GPU;
#   2. the headless runner for every method, all at once (the models are small: one of them
#      alone leaves the GPU mostly idle), each with a cap on its training time.
# Needs, beside the checkout: .whl/ (keras 3.15.1, namex 0.1.0, optree 0.20.0 cp312,
# platformdirs) and .device_data/ (omniglot/, orl_faces/, fsdd/ as in ../shared/data), both
# carried to the machine. Records and logs go to $OUT (the device tool's folder), one folder per
# method; elsewhere to _gpu_run/. Test it on a CPU first with small numbers:
#   SCALE=quick BUDGET=5 BENCH_EPISODES=16 BENCH_MBS="1 4" TIMEOUT=600 bash scripts/gpu_full_run.sh
set -uo pipefail
if [ -d .whl ] && ! KERAS_BACKEND=jax python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
OUT=${OUT:-_gpu_run}
SCALE=${SCALE:-full}
BUDGET=${BUDGET:-200}           # seconds of training per model (each method's cap)
TIMEOUT=${TIMEOUT:-330}         # hard limit per method, training and testing
BENCH_EPISODES=${BENCH_EPISODES:-1024}
BENCH_MBS=${BENCH_MBS:-1 16 64}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD KERAS_BACKEND=jax MLBOOK_DATA=$PWD/.device_data \
  MLBOOK_CACHE=/tmp/mlbook-cache PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
clean() { grep -v "^I0000\|^W0000\|^WARNING: All log" | tr '\r' '\n' | grep -v "it/s\]\|s/it\]"; }

# 1. Throughput of the training step (60-way 1-shot), alone on the GPU: the chapters' loop
#    (model.fit over segments) against the earlier one (train_on_batch, loss read every step).
start=$(date +%s)
timeout 150 python3 scripts/bench_protonet.py --mbs $BENCH_MBS --before \
  --episodes "$BENCH_EPISODES" --repeats 2 2>&1 | clean | tee "$OUT/bench.txt"
echo "benchmark: $(( $(date +%s) - start )) s"

# 2. Every method at once; JAX must not grab most of the GPU's memory for each process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false MLBOOK_CONCURRENT_RUNS=10
run() {  # run NAME ARGS...: the runner with its own results folder and log
  local name=$1; shift
  mkdir -p "$OUT/$name"
  ( MLBOOK_RESULTS="$OUT/$name" timeout "$TIMEOUT" python3 -m mlbook_utils.reproduce "$@" \
      --scale "$SCALE" 2>&1 | clean > "$OUT/$name/log.txt"; echo "$name: exit ${PIPESTATUS[0]}" ) &
}
start=$(date +%s)
run protonet protonet --episodes 1000 --time-budget 150
run metric-space metric-space --episodes 1000 --time-budget $(( BUDGET / 2 ))
run relation relation --episodes 1000 --time-budget "$BUDGET"
run matching matching --episodes 1000 --time-budget "$BUDGET"
run matching-no-fce matching-no-fce --episodes 1000 --time-budget $(( BUDGET / 2 ))
run siamese siamese --time-budget $(( BUDGET / 3 ))
run lstm lstm-meta-learner --time-budget $(( BUDGET / 2 ))
run learned-optimizer learned-optimizer --time-budget "$BUDGET"
run pretrained pretrained --episodes 1000 --time-budget "$BUDGET"
run ntm ntm --time-budget "$BUDGET"
wait
echo "all methods: $(( $(date +%s) - start )) s"
tail -n 3 "$OUT"/*/log.txt

# 3. Chapter 5.1's question: is the NTM's step loop faster on the GPU than on a CPU (the
#    chapter's CPU figures come from the same script with TensorFlow)?
timeout 120 python3 scripts/bench_ntm.py --scale "$SCALE" 2>&1 | clean | tee "$OUT/bench_ntm.txt"

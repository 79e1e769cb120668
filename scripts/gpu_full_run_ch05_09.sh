#!/usr/bin/env bash
# Chapters 5.2 and 9.1 to 9.4 at `full` scale on the lent GPU machine (Python 3.12 + JAX, no
# TensorFlow), in one call of about 9 minutes: MANN (one model, capped at BUDGET seconds), and
# meta-imitation, TAML (Omniglot and sinusoids), CACTUs and the concept space, which train many
# models in turn (arms x seeds, lambda sweeps), each capped at MANY_BUDGET seconds. All run at
# once. (5.1's NTM is in gpu_full_run.sh.) What a cap allows is in each record
# (train_meta_steps or train_episodes, train_wall_s) and log.
# Needs, beside the checkout: .whl/ (keras 3.15.1, namex 0.1.0, optree 0.20.0 cp312,
# typing_extensions) and .device_data/omniglot (as in ../shared/data), both carried to the
# machine. Records and logs go to $OUT (the device tool's folder), one folder per method;
# elsewhere to _gpu_run/. Test it on a CPU first:
#   PYTHON=.venv-jax/bin/python SCALE=quick BUDGET=5 MANY_BUDGET=3 TIMEOUT=600 \
#     MLBOOK_DATA=../shared/data bash scripts/gpu_full_run_ch05_09.sh
set -uo pipefail
PYTHON=${PYTHON:-python3}
if [ -d .whl ] && ! KERAS_BACKEND=jax "$PYTHON" -c "import keras" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
OUT=${OUT:-_gpu_run}
SCALE=${SCALE:-full}
BUDGET=${BUDGET:-400}           # seconds of training of the one-model runs (MANN)
TIMEOUT=${TIMEOUT:-560}         # hard limit per method, training and testing
MANY_BUDGET=${MANY_BUDGET:-25}  # seconds per model of the runners that train many in turn
mkdir -p "$OUT"
if [ -d .device_data ]; then export MLBOOK_DATA=$PWD/.device_data; fi
export PYTHONPATH=${PYTHONPATH:-$PWD}:$PWD KERAS_BACKEND=jax MLBOOK_CACHE=/tmp/mlbook-cache \
  PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
clean() { grep -v "^I0000\|^W0000\|^WARNING: All log" | tr '\r' '\n' | grep -v "it/s\]\|s/it\]"; }

export XLA_PYTHON_CLIENT_PREALLOCATE=false MLBOOK_CONCURRENT_RUNS=5
run() {  # [RUN_BUDGET=S] run NAME ARGS...: the runner with its own results folder and log
  local name=$1 budget=${RUN_BUDGET:-$BUDGET}; shift
  mkdir -p "$OUT/$name"
  ( MLBOOK_RESULTS="$OUT/$name" timeout "$TIMEOUT" "$PYTHON" -m mlbook_utils.reproduce "$@" \
      --scale "$SCALE" --time-budget "$budget" 2>&1 | clean > "$OUT/$name/log.txt"
    echo "$name: exit ${PIPESTATUS[0]}" ) &
}
start=$(date +%s)
run mann mann
RUN_BUDGET=$MANY_BUDGET run meta-imitation meta-imitation
RUN_BUDGET=$MANY_BUDGET run taml taml
RUN_BUDGET=$MANY_BUDGET run taml-sinusoid taml-sinusoid
RUN_BUDGET=$MANY_BUDGET run cactus cactus
RUN_BUDGET=$MANY_BUDGET run concept-space concept-space
wait
echo "all methods: $(( $(date +%s) - start )) s"
tail -n 3 "$OUT"/*/log.txt

#!/usr/bin/env bash
# Reproduce models/edgeemo_fer_int8.tflite: two seeds trained in parallel (one core each),
# exported as one full-int8 ensemble, measured with `edgeemo eval`, recorded in the catalog.
# About 82 minutes on the 2-core dev VM (80 epochs, bf16 autocast). Run through `make train`.
set -euo pipefail

PY=${TRAIN_PY:-.venv-train/bin/python}
EDGEEMO=${EDGEEMO:-.venv/bin/edgeemo}
DATA=${FER2013_DIR:-../shared/data/fer2013}
OUT=${TRAIN_OUT:-build/train}
EPOCHS=${TRAIN_EPOCHS:-80}
SEEDS=${TRAIN_SEEDS:-1 2}

for f in train.npz publictest.npz; do
    [[ -f "$DATA/$f" ]] || { echo "train: $DATA/$f not found; set FER2013_DIR to the fer2013 folder" >&2; exit 2; }
done
mkdir -p "$OUT"

# glibc hands the large activation buffers back to the kernel after every step and faults
# them in again on the next; keeping them mapped cut system time from 50% to ~1% here.
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=1073741824

pids=() checkpoints=()
for seed in $SEEDS; do
    checkpoints+=(--checkpoint "$OUT/m$seed/model.pt")
    # EXPORT_ONLY=1: re-export and re-measure the checkpoints already in $OUT.
    [[ "${EXPORT_ONLY:-0}" == 1 ]] && continue
    "$PY" -m edgeemo.training.train --data "$DATA" --seed "$seed" --threads 1 --epochs "$EPOCHS" \
        --out "$OUT/m$seed" >"$OUT/m$seed.log" 2>&1 &
    pids+=($!)
    echo "train: seed $seed running (log: $OUT/m$seed.log)"
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "train: a training run failed; see $OUT/m*.log" >&2; exit 1; }
done

"$PY" -m edgeemo.training.export "${checkpoints[@]}" --data "$DATA" --out-dir models \
    --float-out "$OUT/edgeemo_fer_int8_float.tflite" --onnx
# The whole ensemble (every network on every face), then the CPU's default early exit.
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models --no-early-exit \
    --json >"$OUT/eval_fer2013.json"
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models --no-early-exit \
    --labels ferplus --json >"$OUT/eval_ferplus.json"
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models \
    --json >"$OUT/eval_early_exit.json"
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models --labels ferplus \
    --json >"$OUT/eval_early_exit_ferplus.json"
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model "$OUT/edgeemo_fer_int8_float.tflite" --json >"$OUT/eval_float.json"
# The ONNX twin (backend onnx) on ONNX Runtime's CPU provider.
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models --backend onnx \
    --json >"$OUT/eval_onnx.json"
"$EDGEEMO" eval --data "$DATA/publictest.npz" --model edgeemo_fer_int8 --models-dir models --backend onnx \
    --labels ferplus --json >"$OUT/eval_onnx_ferplus.json"
"$PY" -m edgeemo.training.export --record "$OUT/eval_fer2013.json" "$OUT/eval_ferplus.json"
echo "train: done; models/edgeemo_fer_int8.tflite, .onnx and edgeemo/catalog/edgeemo_fer_int8.json updated"

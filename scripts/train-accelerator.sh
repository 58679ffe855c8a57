#!/usr/bin/env bash
# One accelerator lease → a better emotion model. Three modes:
#
#   scripts/train-accelerator.sh              on a CUDA machine: teachers, then students (below)
#   scripts/train-accelerator.sh --dry-run    the same steps on the CPU, tiny, then export and
#                                             eval into the output folder (make test-train runs it)
#   scripts/train-accelerator.sh --finish DIR here, on the run brought back: export the students
#                                             to models/, measure with `edgeemo eval`, record
#
# The lease run, inside one BUDGET_S (default 450 s, for a 10-minute command with margin):
#   1. data: FER2013 packed by `python -m edgeemo.training.pack` (.devdata/fer2013, carried),
#      unpacked to local disk;
#   2. teachers: TEACHER_SEEDS VGG-class nets in parallel on the one GPU, each sizing its own
#      epochs to TEACHER_SHARE of the budget (train --time-budget);
#   3. students: STUDENT_SEEDS of the daemon's own network in parallel, each distilled from the
#      teachers' mean (train --teacher, a bank of TEACHER_VIEWS labelled views on the GPU),
#      sized to what is left;
#   4. everything (checkpoints, curves, logs) in one tar under OUT, rewritten after each phase
#      so a run cut short still brings back what it finished.
# Export needs litert-torch and ai-edge-quantizer, which the lease machine does not have and
# cannot fetch: that step and the measurements run here with --finish.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=run
case "${1:-}" in
    --dry-run) MODE=dry ;;
    --finish) MODE=finish; RUN_DIR=${2:?--finish needs the run folder (unpacked run.tar)} ;;
    "") ;;
    *) echo "usage: $0 [--dry-run | --finish RUN_DIR]" >&2; exit 2 ;;
esac

TEACHER_SEEDS=${TEACHER_SEEDS:-1 2}
STUDENT_SEEDS=${STUDENT_SEEDS:-1 2}
STUDENT_ARGS=${STUDENT_ARGS:---width 32}
EXTRA_ARGS=${EXTRA_ARGS:-}  # appended to every train run, e.g. "--limit 512" for a rehearsal
TEACHER_VIEWS=${TEACHER_VIEWS:-24}
# CROSSFIT=1: teacher i of n trains on all but fold i of n and, when distilling, labels only the
# faces it never saw (the VGG pair of the first lease memorised its training labels: 95.9%
# agreement, so its "soft" targets were the labels again). n = the number of TEACHER_SEEDS.
CROSSFIT=${CROSSFIT:-0}

if [[ $MODE == finish ]]; then
    # The students are an ensemble like the CPU recipe's: scripts/train.sh exports, measures
    # and records them (EXPORT_ONLY), exactly as after `make train`.
    [[ -f "$RUN_DIR/m1/model.pt" ]] || { echo "finish: $RUN_DIR/m1/model.pt not found" >&2; exit 2; }
    EXPORT_ONLY=1 TRAIN_OUT="$RUN_DIR" TRAIN_SEEDS="$STUDENT_SEEDS" exec ./scripts/train.sh
fi

if [[ $MODE == dry ]]; then
    PY=${TRAIN_PY:-.venv-train/bin/python}
    DEVICE=${DEVICE:-cpu}
    OUT=${ACCEL_OUT:-build/accel-dry}
    DATA=${FER2013_DIR:-../shared/data/fer2013}
    # One epoch of each on a slice: proves every step and file, not the accuracy.
    TEACHER_EXTRA=(--epochs 1 --limit 256 --test-limit 256 --threads 1 --batch 64 --save-bf16)
    STUDENT_EXTRA=(--epochs 1 --limit 512 --test-limit 256 --threads 1 --batch 64 --teacher-views 2)
    BUDGET_S=0
else
    PY=${TRAIN_PY:-python3}
    DEVICE=${DEVICE:-cuda}
    OUT=${ACCEL_OUT:-${OUT:-build/accel}}
    DATA=${FER2013_DIR:-.devdata/fer2013}
    BUDGET_S=${BUDGET_S:-450}
    TEACHER_SHARE=${TEACHER_SHARE:-0.55}
    # Learning rates for batch 256 (the CPU recipe's 0.1 at 128, scaled linearly for the
    # student; the VGG teacher at half that, as its published recipe runs lower).
    TEACHER_EXTRA=(--epochs 400 --batch 256 --lr 0.05 --save-bf16)
    STUDENT_EXTRA=(--epochs 400 --batch 256 --lr 0.2 --teacher-views "$TEACHER_VIEWS")
fi

WORK=${ACCEL_WORK:-$(mktemp -d /tmp/edgeemo-accel.XXXXXX)}
mkdir -p "$OUT" "$WORK"
START=$(date +%s)
elapsed() { echo $(($(date +%s) - START)); }
say() { echo "[accel $(elapsed)s] $*"; }

# Bring back what is done so far: one tar, rewritten after each phase (a lease returns at most
# 8 files of 16 MiB, so it is split if it grows past that).
save() {
    rm -f "$OUT"/run.tar.part-*
    tar -C "$WORK" --exclude=data -cf - . | split -b 15M -d - "$OUT/run.tar.part-"
    say "saved $(du -ch "$OUT"/run.tar.part-* | tail -1 | cut -f1) to $OUT/run.tar.part-*"
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
} | tee "$WORK/machine.txt"

# 1. Data.
if [[ -f "$DATA/train.npz" ]]; then
    FER=$DATA
elif [[ -f "$DATA/train.images.xz" ]]; then
    FER=$WORK/data
    "$PY" -m edgeemo.training.pack unpack "$DATA" "$FER"
else
    echo "accel: no FER2013 in $DATA (train.npz, or train.images.xz from edgeemo.training.pack); set FER2013_DIR" >&2
    exit 2
fi
say "data ready in $FER"

run_parallel() {  # phase name, then one "dir|args" per process
    local phase=$1 pids=() dirs=() spec dir
    shift
    for spec in "$@"; do
        dir=${spec%%|*}
        mkdir -p "$WORK/$dir"
        # shellcheck disable=SC2086
        "$PY" -u -m edgeemo.training.train --data "$FER" --device "$DEVICE" --out "$WORK/$dir" ${spec#*|} \
            >"$WORK/$dir.log" 2>&1 &
        pids+=($!) dirs+=("$dir")
    done
    local failed=0 i
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "accel: $phase ${dirs[$i]} failed; its log:" >&2
            tail -20 "$WORK/${dirs[$i]}.log" >&2
            failed=1
        fi
        tail -2 "$WORK/${dirs[$i]}.log"
    done
    return $failed
}

# 2. Teachers, or TEACHERS="a.pt b.pt": teachers trained before, packed with
#    `python -m edgeemo.training.pack pack-teacher` (distil again without training them again).
budget() { [[ $BUDGET_S == 0 ]] && echo 0 || echo "$1"; }
if [[ -n ${TEACHERS:-} ]]; then
    TEACHER_SEEDS=""
    i=0
    for t in $TEACHERS; do
        i=$((i + 1))
        "$PY" -m edgeemo.training.pack unpack-teacher "$t" "$WORK/t$i/model.pt"
        TEACHER_SEEDS+="$i "
    done
    say "teachers unpacked from $TEACHERS"
else
    T_BUDGET=$(budget "$(awk -v b="$BUDGET_S" -v s="${TEACHER_SHARE:-0}" 'BEGIN { printf "%d", b * s }')")
    specs=()
    n_teachers=$(wc -w <<<"$TEACHER_SEEDS")
    k=0
    for seed in $TEACHER_SEEDS; do
        fold=""
        [[ $CROSSFIT == 1 ]] && fold="--fold $k/$n_teachers"
        specs+=("t$seed|--arch vgg --seed $seed $fold --time-budget $T_BUDGET ${TEACHER_EXTRA[*]} $EXTRA_ARGS")
        k=$((k + 1))
    done
    say "teachers (seeds $TEACHER_SEEDS) start, ${T_BUDGET}s each"
    teachers_ok=1
    run_parallel teacher "${specs[@]}" || teachers_ok=0
    save
fi
teacher_args=()
for seed in $TEACHER_SEEDS; do
    [[ -f "$WORK/t$seed/model.pt" ]] && teacher_args+=(--teacher "$WORK/t$seed/model.pt")
done
[[ ${#teacher_args[@]} -gt 0 ]] || { echo "accel: no teacher finished; nothing to distil" >&2; exit 1; }
[[ ${teachers_ok:-1} == 1 ]] || say "going on with the teachers that finished: ${teacher_args[*]}"

# 3. Students: what is left, less 30 s to pack and hand back.
S_BUDGET=$(budget $((BUDGET_S - $(elapsed) - 30)))
if [[ $BUDGET_S != 0 && $S_BUDGET -lt 60 ]]; then
    echo "accel: only ${S_BUDGET}s left for the students; raise BUDGET_S or lower TEACHER_SHARE" >&2
    exit 1
fi
specs=()
for seed in $STUDENT_SEEDS; do
    specs+=("m$seed|--arch emonet $STUDENT_ARGS --seed $seed --time-budget $S_BUDGET ${STUDENT_EXTRA[*]} ${teacher_args[*]} $EXTRA_ARGS")
done
say "students (seeds $STUDENT_SEEDS) start, ${S_BUDGET}s each"
students_ok=1
run_parallel student "${specs[@]}" || students_ok=0
save
[[ $students_ok == 1 ]] || exit 1

if [[ $MODE == dry ]]; then
    # 4. Export and measure into OUT (never models/ or the catalog).
    export_args=()
    for seed in $STUDENT_SEEDS; do export_args+=(--checkpoint "$WORK/m$seed/model.pt"); done
    "$PY" -m edgeemo.training.export "${export_args[@]}" --data "$FER" --out-dir "$OUT/models" \
        --float-out "$WORK/float.tflite" --calibration 50 --no-catalog
    "${EDGEEMO:-.venv/bin/edgeemo}" eval --data "$FER/publictest.npz" --model "$OUT/models/edgeemo_fer_int8.tflite" \
        --json >"$OUT/eval_fer2013.json"
    say "dry run done: $OUT/models/edgeemo_fer_int8.tflite, $OUT/eval_fer2013.json"
else
    say "done; bring $OUT back, then: cat run.tar.part-* | tar -xf - -C RUN && $0 --finish RUN"
fi

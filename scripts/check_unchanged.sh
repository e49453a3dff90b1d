#!/usr/bin/env bash
# Before/after check of a change that must not change what a user sees: runs the quick config
# (config/quick.yaml, up to the statistics) and recomputes the published study's tables
# (docs/study jobs -> cv_folds, cv_summary, stats) with the code at COMMIT and with the working
# tree, then compares cv_folds.tsv, cv_summary.tsv, stats/*.tsv and summary.md byte for byte.
# compare_to_best.tsv is compared without its rope/probability columns (added by issue 24).
#
#   scripts/check_unchanged.sh COMMIT [OUT_DIR]      (CORES=2 DATA=../shared/datasets/... by default)
# Exit status 0 when everything compared is identical, 1 otherwise.
set -euo pipefail
commit=${1:?usage: scripts/check_unchanged.sh COMMIT [OUT_DIR]}
repo=$(git rev-parse --show-toplevel)
out=$(realpath -m "${2:-$repo/.check_unchanged}")
cores=${CORES:-2}
data=$(realpath "${DATA:-$repo/../shared/datasets/sign-language-digits}")
mkdir -p "$out"

# The code to run: COMMIT's files in $out/code-before, the working tree as it is.
before="$out/code-before"
if [ ! -d "$before" ]; then  # an export of its files: no worktree or branch is registered
    mkdir -p "$before" && git -C "$repo" archive "$commit" | tar -x -C "$before"
fi

run() {  # run CODE_DIR NAME: the quick workflow's statistics and the study's tables with CODE_DIR
    local code=$1 name=$2
    local work="$out/$name"
    if [ -f "$work/.done" ]; then echo "$name: reusing $work"; return; fi
    rm -rf "$work" && mkdir -p "$work/quick" "$work/empty"
    echo "$name: quick config with $code"
    (cd "$work/quick" && snakemake results/stats/summary.html results/cv_folds.tsv \
        -s "$code/workflow/Snakefile" -d "$work/quick" --cores "$cores" \
        --configfile "$code/config/quick.yaml" --config data_dir="$data" > "$work/quick.log" 2>&1)
    echo "$name: study statistics with $code"
    mkdir -p "$work/study"
    cp -r "$repo/docs/study/jobs" "$work/study/jobs"
    cp "$repo/docs/study/original.tsv" "$work/study/"
    (cd "$code" && python scripts/publish_study.py publish --workdir "$work/empty" \
        --published "$work/study" --config "$repo/docs/study/config.yaml" > "$work/study.log" 2>&1)
    touch "$work/.done"
}
run "$before" before
# ONLY=before: prepare the reference outputs and stop (e.g. while the change is being made).
[ "${ONLY:-}" = before ] && exit 0
run "$repo" after

# The quick run writes no summary.md (only summary.html), the study writes both. Compared byte
# for byte, except for the columns a run cannot repeat or issue 24 changed on purpose, which are
# left out and the rest compared as text:
#   cv_folds.tsv: seconds, images_per_second; cv_summary.tsv: minutes (timings of this machine)
#   compare_to_best.tsv: rope, probability (new: the thresholds of its verdicts)
#   compare_models.tsv: config_a, config_b (before: text) and <axis>_a, <axis>_b, rope,
#     probability (after: the settings as columns, the thresholds)
status=0
compare() {  # compare RELATIVE_PATH
    local a="$out/before/$1" b="$out/after/$1"
    if [ ! -f "$a" ] || [ ! -f "$b" ]; then echo "MISSING  $1"; status=1; return; fi
    if cmp -s "$a" "$b"; then echo "same     $1"; return; fi
    local drop
    case "$1" in
        */cv_folds.tsv) drop="seconds images_per_second" ;;
        */cv_summary.tsv) drop="minutes" ;;
        */compare_to_best.tsv) drop="rope probability" ;;
        */compare_models.tsv) drop="config_a config_b rope probability *_a *_b" ;;
        *) echo "DIFFERS  $1"; status=1; return ;;
    esac
    if python - "$a" "$b" "$drop" <<'PY'; then echo "same     $1 (without: $drop)"; else echo "DIFFERS  $1"; status=1; fi
import fnmatch, sys
import pandas as pd
before, after = (pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in sys.argv[1:3])
keep = ("model_a", "model_b", "mean_accuracy_a", "mean_accuracy_b")  # not settings columns
def left(frame):
    dropped = [c for c in frame.columns if c not in keep and any(fnmatch.fnmatch(c, d) for d in sys.argv[3].split())]
    return frame.drop(columns=dropped).to_csv(sep="\t", index=False)
sys.exit(0 if left(before) == left(after) else 1)
PY
}
for root in quick/results study/stratified study/participants; do
    files=$(cd "$out/before/$root" && ls cv_folds.tsv cv_summary.tsv stats/*.tsv stats/summary.md stats/summary.html 2>/dev/null || true)
    for f in $files; do compare "$root/$f"; done
done
[ $status = 0 ] && echo "check_unchanged: identical to $commit" || echo "check_unchanged: DIFFERS from $commit"
exit $status

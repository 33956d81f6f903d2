#!/usr/bin/env bash
# The README's main job: install, then the small CPU study end to end over 5 seeds into runs/small
# (or the directory given as the first argument):
#   1. pre-train and fine-tune seeds 0-4 side by side (one process and one thread each), then score
#      every test set with the seeds pooled (eval.json, report.md);
#   2. the analyses the page shows, on both cores: the basin radius of every seed and of the
#      hand-built model on one, probes and patching (interpret) on the other; then the LLC of every
#      seed's fine-tuned model, two at a time (its calibration first, on those models' own features;
#      the pre-training checkpoints' LLC, on other data and not comparable with these, is
#      `python -m graphpath.llc runs/small --stage pretrain`);
#   3. the page (its path is printed).
# Any step that fails stops the job with its own exit status; Ctrl-C stops every step.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/small}
PY=${PYTHON:-python3}
start=$SECONDS
step() { echo "main_job: $* (at $((SECONDS - start)) s)" >&2; }

step install
bash scripts/install.sh
step "train and score 5 seeds"
"$PY" -m graphpath.train --seeds 0,1,2,3,4 --threads 1 --out "$out"

step "basin beside interpret"
"$PY" -m graphpath.basin "$out" --with-handcrafted --threads 1 &
basin=$!
trap 'kill "$basin" 2>/dev/null || true' EXIT
"$PY" -m graphpath.interpret "$out" --threads 1
step llc
"$PY" -m graphpath.llc "$out" --stage finetune --threads 1 --workers 2 --quiet --calibration-may-fail
wait "$basin"
trap - EXIT
step "llc and basin done; the page"

"$PY" -m blog "$out"
step done

#!/usr/bin/env bash
# The README's main job: install, then the small CPU study end to end over 5 seeds into runs/small
# (or the directory given as the first argument):
#   1. pre-train and fine-tune seeds 0-4 side by side (one process and one thread each), then score
#      every test set with the seeds pooled (eval.json, report.md);
#   2. the analyses the page shows: the basin radius of every seed and of the hand-built model,
#      probes and patching (interpret), then the LLC of every seed's fine-tuned model, two at a
#      time (its calibration first, on those models' own features;
#      the pre-training checkpoints' LLC, on other data and not comparable with these, is
#      `python -m graphpath.llc runs/small --stage pretrain`);
#   3. the page (its path is printed).
# Any step that fails stops the job with its own exit status; Ctrl-C stops it.
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

# One after another: each analysis holds the run directory while it writes (graphpath_common.locks),
# so two cannot run on it at once; llc spreads its models over both cores.
step basin
"$PY" -m graphpath.basin "$out" --with-handcrafted --threads 1
step interpret
"$PY" -m graphpath.interpret "$out" --threads 1
step llc
"$PY" -m graphpath.llc "$out" --stage finetune --threads 1 --workers 2 --quiet --calibration-may-fail
step "the page"
"$PY" -m blog "$out"
step done

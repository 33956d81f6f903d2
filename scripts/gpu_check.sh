#!/usr/bin/env bash
# The GPU check: run from the repository root on a machine with one CUDA GPU.
#   bash scripts/gpu_check.sh                 # about 10 minutes on one H200-class GPU
#   PAPER_SECONDS=600 bash scripts/gpu_check.sh
# In order, printing as it goes (and into $OUT/gpu_check.log):
#   1. the CUDA tests (tests/test_cuda.py: CUDA step = CPU step in fp32, CUDA checkpoints load on the
#      CPU bit-identically, TF32/bf16 choices, pinned transfers, exact resume with the prefetching
#      feed), then the fast suite (-m "not slow") on this machine's Python, torch and numpy;
#   2. benchmarks/bench_train.py at the paper preset's shapes (batch 2^15, n <= 15): examples/s and
#      FLOP/s against the matmul peak measured in the same run, TF32 and bf16, ours next to the study's
#      architecture as nn.TransformerEncoder padded to the longest graph;
#   3. experiments/paper.toml's pre-training for PAPER_SECONDS (default 300), held-out MSE every 200
#      steps, then the curve next to the study's own training log.
# Python packages missing from the machine can be carried as wheels in .whl/ (installed to /tmp/site).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
PY=${PYTHON:-python3}
PAPER_SECONDS=${PAPER_SECONDS:-300}
RUN=${PAPER_RUN:-/tmp/graphpath-paper}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

section() { echo; echo "== $* ($(date +%T))"; }

{
section "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
"$PY" -c "import torch, numpy, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| numpy', numpy.__version__, '|', torch.cuda.get_device_name(0), '| cores', __import__('os').cpu_count())"

section "1. CUDA tests"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py -rs
section "1. the fast suite on this machine (-m 'not slow and not cuda')"
timeout 420 "$PY" -m pytest -q -p no:cacheprovider -m "not slow and not cuda" -n 8 ${PYTEST_EXTRA:-}

section "2. bench_train.py on CUDA at the paper preset's shapes"
timeout 240 "$PY" benchmarks/bench_train.py --device cuda

section "3. experiments/paper.toml pre-training for ${PAPER_SECONDS}s"
rm -rf "$RUN"
timeout -s INT "$PAPER_SECONDS" "$PY" -m graphpath.train --config experiments/paper.toml --device cuda \
    --stage pretrain --out "$RUN" --no-figures --train.eval_every 200
cp "$RUN/metrics.jsonl" "$OUT/paper_metrics.jsonl" 2>/dev/null
cp "$RUN/config.toml" "$OUT/paper_config.toml" 2>/dev/null
"$PY" - "$RUN/metrics.jsonl" <<'EOF'
import json, sys
# The study's committed training log (`loss` in awestover/transformer-shortest-paths: one line per
# step of 2^15 graphs), means of 20 steps of the batch MSE: examples seen -> MSE.
STUDY = [(6.6e6, 0.099), (9.8e6, 0.071), (16e6, 0.051), (33e6, 0.034), (77e6, 0.019)]
try:
    lines = [json.loads(line) for line in open(sys.argv[1])]
except OSError as error:
    sys.exit(f"no metrics: {error}")
evals = [m for m in lines if m["stage"] == "pretrain" and "eval_loss" in m]
last = [m for m in lines if m["stage"] == "pretrain"][-1]
print(f"{'step':>6} {'examples':>12} {'seconds':>8} {'held-out MSE':>13} {'study log at these examples':>28}")
for m in evals:
    near = min(STUDY, key=lambda s: abs(s[0] - m["examples"]))
    mark = f"{near[1]:.3f} at {near[0] / 1e6:.1f}M" if abs(near[0] - m["examples"]) < 0.25 * near[0] else ""
    print(f"{m['step']:>6} {m['examples']:>12,} {m['elapsed_s']:>8.0f} {m['eval_loss']:>13.4f} {mark:>28}")
speed = last["examples"] / max(last["elapsed_s"], 1e-9)
print(f"reached step {last['step']} ({last['examples']:,} examples) in {last['elapsed_s']:.0f}s: {speed:,.0f} examples/s "
      f"incl. evaluation; the full 9600 steps (3.15e8 examples) would take {3.15e8 / speed / 60:.0f} min")
EOF
section "done"
} 2>&1 | tee "$OUT/gpu_check.log"

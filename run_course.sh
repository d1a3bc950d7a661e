#!/usr/bin/env bash
# Set up .venv and run every chapter of the course at the paper's settings (CARMA_PROFILE=paper);
# figures and tables are regenerated into figures/. Takes longer than the quick test run.
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/setup
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
CARMA_PROFILE=${CARMA_PROFILE:-paper} OMP_NUM_THREADS=1 .venv/bin/nbdev_test --n_workers 2 --do_print --timing
echo "Done. Figures and tables are in figures/; open the chapters with: .venv/bin/jupyter lab nbs/"

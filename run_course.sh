#!/usr/bin/env bash
# Set up .venv and run every chapter of the course, in order, as a reader would.
#   bash run_course.sh                       quick profile: a few minutes; figures go to figures/_quick/
#   CARMA_PROFILE=paper bash run_course.sh   the paper's settings; refreshes the committed figures/ (long:
#                                            the CARMA chapter trains 10 seeds per SCM)
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/setup
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
profile=${CARMA_PROFILE:-quick}
echo "Running the course with CARMA_PROFILE=$profile"
CARMA_PROFILE=$profile OMP_NUM_THREADS=1 .venv/bin/nbdev_test --n_workers 2 --do_print --timing
if [ "$profile" = paper ]; then out=figures/; else out=figures/_quick/; fi
echo "Done. Figures and tables are in $out; open the chapters with: .venv/bin/jupyter lab nbs/"

"""Execute chapters in place so the committed notebooks show their outputs (CONVENTIONS: step 2).

    python tools/execute_nbs.py nbs/01_scm.ipynb [more.ipynb ...]   # default: every chapter

Runs with the profile in CARMA_PROFILE (default: paper, so figures/ is refreshed). Each notebook runs
from nbs/ in a fresh execnb shell; a failing cell stops with its traceback. Torch runs on one thread, as
under nbdev_test and in `carma-nb reproduce`'s workers, so the outputs match theirs to the last digit.
"""

import os
import sys
from pathlib import Path

import torch
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path):
    nb = read_nb(path)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        shell = CaptureShell()
        shell.run_all(nb, exc_stop=True)
    finally:
        os.chdir(cwd)
    write_nb(nb, path)
    print(f'executed {path.relative_to(ROOT)}')


if __name__ == '__main__':
    torch.set_num_threads(1)
    paths = [Path(p).resolve() for p in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('[0-9]*.ipynb')) + [
        ROOT / 'nbs' / 'index.ipynb'
    ]
    for p in paths:
        run(p)

"""How a classifier's validation accuracy (chapter 3) depends on the one draw of data it is trained on.

The original work reports one classifier per SCM, trained on one draw of the classifier pool. This script
trains the classifier at the paper profile (500 epochs, batch 256, lr 1e-3, seed 0) on N independent draws
of the classifier pool (pool seeds 0 … N−1), prints each draw's validation accuracy, then the spread and how
many draws come within 1.5 points of the original work's value. Nothing is cached.

    python tools/classifier_draws.py loan --optimizer sgd --draws 10
"""
import argparse
import time

import torch

from carma_nb.classifier import CLASSIFIER_OPTIMIZERS, PAPER_CLF_ACCURACY, accuracy, train_classifier
from carma_nb.data import make_pools
from carma_nb.scm import SCM_NAMES


def main(name: str, n: int, optimizer: str):
    ref, accs = PAPER_CLF_ACCURACY[name], []
    print(f'{name}: validation accuracy of the {optimizer} classifier (paper profile, seed 0) on {n} draws of the '
          f'classifier pool; original work (reference): {ref}')
    for draw in range(n):
        t = time.perf_counter()
        pool = make_pools(name, draw).classifier
        clf = train_classifier(name, pool, 'paper', optimizer=optimizer, cache=False, verbose=False)
        accs.append(accuracy(clf, pool.val))
        print(f'  pool seed {draw:>3}: {accs[-1]:.4f}   ({time.perf_counter() - t:.0f} s)', flush=True)
    a = torch.tensor(accs)
    print(f'{name} ({optimizer}): min {a.min():.4f}, median {a.median():.4f}, max {a.max():.4f}; '
          f'{int(((a - ref).abs() <= 0.015).sum())} of {n} draws within 1.5 points of the original ({ref})')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm', choices=SCM_NAMES, help='a paper SCM, e.g. loan')
    ap.add_argument('--optimizer', choices=sorted(CLASSIFIER_OPTIMIZERS), default='adam',
                    help="'adam' (SPEC §3, the default) or 'sgd' (the original code's)")
    ap.add_argument('--draws', type=int, default=10, help='number of pool draws (pool seeds 0 … N-1), default %(default)s')
    a = ap.parse_args()
    if a.draws < 1: ap.error(f'--draws takes a number of pool draws ≥ 1, got {a.draws}')
    main(a.scm, a.draws, a.optimizer)

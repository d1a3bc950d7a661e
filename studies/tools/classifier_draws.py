"""How a classifier's validation accuracy (chapter 3) depends on the one draw of data it is trained on.

Used by studies/classifier_optimizer.ipynb; its output is committed as figures/studies/classifier_draws.txt.

The original work reports one classifier per SCM, trained on one draw of the classifier pool. This script
trains the classifier at the paper profile (500 epochs, batch 256, lr 1e-3, seed 0) on N independent draws
of the classifier pool (pool seeds 0 … N−1), prints each draw's validation accuracy, then the spread and how
many draws come within 1.5 points of the original work's value. Nothing is cached.

    python studies/tools/classifier_draws.py loan --optimizer sgd --draws 31 >> figures/studies/classifier_draws.txt
"""

import argparse

from carma_nb.classifier import (ClassifierFit, CLASSIFIER_OPTIMIZERS, PAPER_CLF_ACCURACY, accuracy,
                                 train_classifier)
from carma_nb.data import make_pools
from carma_nb.scm import SCM_NAMES
from draws import over_draws


def main(name: str, n: int, optimizer: str):
    ref = PAPER_CLF_ACCURACY[name]
    print(
        f'{name}: validation accuracy of the {optimizer} classifier (paper profile, seed 0) on {n} draws of '
        f'the '
        f'classifier pool; original work (reference): {ref}'
    )

    def score(draw: int) -> float:
        pool = make_pools(name, draw).classifier
        return accuracy(
            train_classifier(name, pool, 'paper', fit=ClassifierFit(optimizer=optimizer),
                             cache=False, verbose=False), pool.val
        )

    over_draws(
        f'{name} ({optimizer})',
        n,
        score,
        lambda a: (a - ref).abs() <= 0.015,
        f'within 1.5 points of the original ({ref})',
    )


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm', choices=SCM_NAMES, help='a paper SCM, e.g. loan')
    ap.add_argument(
        '--optimizer',
        choices=sorted(CLASSIFIER_OPTIMIZERS),
        default='sgd',
        help="'sgd' (the original code's and the package's default) or 'adam' (the paper's appendix)",
    )
    ap.add_argument(
        '--draws', type=int, default=10, help='number of pool draws (pool seeds 0 … N-1), default %(default)s'
    )
    a = ap.parse_args()
    if a.draws < 1:
        ap.error(f'--draws takes a number of pool draws ≥ 1, got {a.draws}')
    main(a.scm, a.draws, a.optimizer)

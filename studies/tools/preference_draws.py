"""Does chapter 10's preference effect depend on the one draw of data the case study uses?

Part of studies/10_preference_savings_share (not of the course). Chapter 10 trains unweighted and weighted
CARMA (the paper's loan weights, preference prior) on one draw of the data (pool seed 0) with ten CARMA
seeds. This script repeats the comparison on N independent draws of
every pool (pool seeds 0 … N−1): for each draw it trains the classifier, the flow and S seeds of both CARMA
variants at the paper profile, serves the draw's rejected test people, and prints, averaged over the seeds,
the features acted on per person and the % of people asked to act on / to change (an act that is not idle,
studies/tools/idle.py) education and savings. It ends with how many draws show each direction of the
paper's effect. Models go through the model cache. figures/studies/preference_draws.txt holds the output of

    python studies/tools/preference_draws.py --draws 8 --seeds 3
    python studies/tools/preference_draws.py --draws 8 --seeds 3 --clf-optimizer sgd
"""

import argparse
import time

import pandas as pd

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.classifier import ClassifierFit, CLASSIFIER_OPTIMIZERS, train_classifier
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS
from carma_nb.recourse import as_weights, rejected
from carma_nb.scm import get_scm
from idle import idle_summary  # studies/tools/idle.py, next to this script


COLUMNS = [
    'acts',
    'acts that change something',
    'education acting %',
    'education changing %',
    'savings acting %',
    'savings changing %',
]


def one_draw(scm, w, draw: int, seeds, clf_optimizer: str) -> pd.DataFrame:
    "The COLUMNS of both CARMA variants (means over the seeds) and the people served, on one draw of data."
    pools = make_pools(scm, draw)
    clf = train_classifier(
        scm, pools.classifier, 'paper', fit=ClassifierFit(optimizer=clf_optimizer), verbose=False
    )
    flow = fit_flow(scm, pools.causal, 'paper', verbose=False)
    people = rejected(clf, pools.recourse.test.x)
    variants = {'CARMA': None, 'CARMA (weighted)': w}
    models = {
        v: train_carma_seeds(
            scm,
            clf,
            flow,
            pools.recourse,
            seeds,
            CarmaOptions(profile='paper', verbose=False, weights=weights),
        )
        for v, weights in variants.items()
    }
    d = idle_summary(models, people)[COLUMNS].rename_axis('variant')
    d.insert(0, 'people', len(people))
    return d


def main(n: int, n_seeds: int, clf_optimizer: str):
    scm = get_scm('loan')
    w = as_weights(scm, PAPER_PREFERENCE_WEIGHTS)
    print(
        f'loan, paper profile, {clf_optimizer} classifier, {n_seeds} CARMA seeds per variant, '
        f'{n} draws of the data',
        flush=True,
    )
    rows = []
    for draw in range(n):
        t = time.perf_counter()
        d = one_draw(scm, w, draw, range(n_seeds), clf_optimizer)
        rows += [{'draw': draw, 'variant': v, **r} for v, r in d.iterrows()]
        print(f'draw {draw} ({time.perf_counter() - t:.0f} s)\n{d.round(2).to_string()}', flush=True)
    t = pd.DataFrame(rows).pivot(index='draw', columns='variant')
    more = lambda col: int((t[(col, 'CARMA (weighted)')] > t[(col, 'CARMA')]).sum())
    less = lambda col: int((t[(col, 'CARMA (weighted)')] < t[(col, 'CARMA')]).sum())
    print(
        f'\nof {n} draws, weighted CARMA (vs unweighted) acts on fewer features in {less("acts")} '
        f'(counting acts that change something: {less("acts that change something")}), '
        f'on education less in {less("education acting %")} (changing: {less("education changing %")}), '
        f'on savings more in {more("savings acting %")} (changing: {more("savings changing %")})'
    )
    print(t.mean().unstack(0).round(2).to_string())


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        '--draws', type=int, default=8, help='number of data draws (pool seeds 0 … N-1), default %(default)s'
    )
    ap.add_argument('--seeds', type=int, default=3, help='CARMA seeds per variant and draw (%(default)s)')
    ap.add_argument(
        '--clf-optimizer',
        choices=sorted(CLASSIFIER_OPTIMIZERS),
        default='adam',
        help="classifier optimizer: 'adam' (the paper's appendix) or 'sgd' (the original code)",
    )
    a = ap.parse_args()
    if a.draws < 1 or a.seeds < 1:
        ap.error(f'--draws and --seeds take numbers ≥ 1, got {a.draws} and {a.seeds}')
    main(a.draws, a.seeds, a.clf_optimizer)

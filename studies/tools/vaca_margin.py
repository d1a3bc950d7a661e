"""CARMA with VACA on loan at several hinge margins: causal validity and cost on the rejected test people.

Part of studies/11_vaca_margin (not of the course). Trains CARMA with VACA as the paper does (the paper's
algorithm: the default recipe of chapter 8, one candidate per seed, no polishing, no classifier
temperature) at the paper profile, 10 seeds per margin, with the classifier the original code trained
(plain SGD), and prints per margin the mean, lowest and highest seed of cost, causal validity, coverage and
acts, and the oracle's cost on the same people. Descriptive only: it reads the test people, so it chooses
nothing. Models go through the model cache. figures/studies/vaca_margin_paper_algorithm.txt holds the
output of

    python studies/tools/vaca_margin.py 0.003 0.03 0.1 0.3
"""

import argparse
import time

import pandas as pd

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.oracle import oracle_reference
from carma_nb.recourse import evaluate_recourse
from carma_nb.vaca import fit_vaca


def main(margins: list[float], seeds: int):
    t0 = time.perf_counter()
    ref = oracle_reference('loan', 'paper')
    vaca = fit_vaca('loan', ref.pools.causal, 'paper', verbose=False)
    print(
        f"loan, paper profile, SGD classifier, the paper's algorithm, {seeds} seeds per margin, "
        f"{len(ref.people)} rejected test people; oracle cost x100 {ref.metrics['cost x100']:.3f}"
    )
    rows = []
    for margin in margins:
        models = train_carma_seeds(
            'loan',
            ref.clf,
            vaca,
            ref.pools.recourse,
            range(seeds),
            CarmaOptions(hparams={'margin': margin}, profile='paper', verbose=False),
        )
        for s, m in enumerate(models):
            rec = m.recommend(ref.people)
            metrics = evaluate_recourse(ref.problem, ref.clf, ref.people, rec).metrics
            rows.append({'margin': margin, 'seed': s, **metrics})
        print(f'margin {margin}: {time.perf_counter() - t0:.0f} s', flush=True)
    cols = ['cost x100', 'validity %', 'coverage %', 'acts']
    table = pd.DataFrame(rows).groupby('margin')[cols].agg(['mean', 'min', 'max'])
    table.columns = [f'{c} {stat}' for c, stat in table.columns]
    table['cost / oracle cost'] = table['cost x100 mean'] / ref.metrics['cost x100']
    print(table.round(3).to_string())


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('margins', type=float, nargs='+', help='hinge margins ε to train, e.g. 0.003 0.03')
    ap.add_argument('--seeds', type=int, default=10, help='CARMA seeds per margin (%(default)s)')
    a = ap.parse_args()
    if a.seeds < 1 or min(a.margins) < 0:
        ap.error(f'--seeds takes a number ≥ 1 and margins numbers ≥ 0, got {a.seeds} and {a.margins}')
    main(a.margins, a.seeds)

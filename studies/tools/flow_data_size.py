"""How a flow's counterfactual error (chapter 4) changes with the size of its training set.

Used by studies/flow_counterfactual_error.ipynb (outputs committed under figures/studies/).
The paper gives the flow 20 000 training rows. This script draws the causal-model pool of an SCM with larger
training splits (the validation and test splits keep their seeds and sizes), fits the flow with the paper's
conditioner, batch, learning rate and schedule, and prints the counterfactual error of chapter 4 per
training size, number of epochs and flow seed. Every flow answers the same questions: the same 2 500 test
rows and the same intervention values (the percentiles of the paper's 20 000-row training split). Nothing is
cached. A falling error with more rows says the 20 000-row error is estimation error of the conditioner, not
a fault of the model or its training.

    python studies/tools/flow_data_size.py collider-lin
    python studies/tools/flow_data_size.py triangle-nlin --runs 20000:1000,80000:250 --seeds 0
    python studies/tools/flow_data_size.py collider-lin --runs 20000:1000 --patience 60   # the original code's

With --draws N it asks a different question: how much the error at the paper's settings depends on the one
draw of data. It fits the flow (seed 0, the paper's pool sizes) on N independent draws of the causal-model pool
(pool seeds 0 … N−1), scores each on its own test split and its own training percentiles (as the original
code scored its one draw), and prints every draw, then the spread and how many draws come within 1.1× of
the original work's value.

    python studies/tools/flow_data_size.py collider-lin --draws 31
"""

import argparse
import time

import torch

from carma_nb.data import make_pools
from carma_nb.flow import FlowFit, PAPER_FLOW_CF_ERROR, fit_flow
from carma_nb.scm import SCM_NAMES, get_scm
from draws import over_draws
from flow_cf_diagnostics import cf_error


def runs_arg(text: str) -> list[tuple[int, int]]:
    "'20000:1000,80000:250' → [(20000, 1000), (80000, 250)] (training rows : epochs)."
    try:
        runs = [tuple(int(v) for v in item.split(':')) for item in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--runs takes rows:epochs pairs separated by commas, e.g. 20000:1000,80000:250; got {text!r}"
        )
    if not runs or any(len(r) != 2 or r[0] < 100 or r[1] < 1 for r in runs):
        raise argparse.ArgumentTypeError(
            f"each run needs at least 100 training rows and 1 epoch, e.g. 20000:1000; got {text!r}"
        )
    return runs


def main(name: str, runs: list[tuple[int, int]], seeds: list[int], patience: int = 30):
    torch.set_num_threads(1)
    scm, base = get_scm(name), make_pools(name).causal
    steps = lambda n, epochs: epochs * -(-n // 4000)
    print(
        f'{name}: counterfactual error on the same {len(base.test.x)} test rows and interventions (chapter 4 '
        f'metric); '
        f'paper settings = 20 000 rows, 1000 epochs; plateau patience {patience}'
    )
    for n, epochs in runs:
        pool = make_pools(name, sizes={'causal': (n, len(base.val.x), len(base.test.x))}).causal
        assert torch.equal(pool.test.x, base.test.x), 'the test split changed with the training size'
        for seed in seeds:
            t = time.perf_counter()
            flow = fit_flow(
                scm, pool, 'paper', fit=FlowFit(epochs=epochs, patience=patience),
                seed=seed, cache=False, verbose=False
            )
            with torch.no_grad():
                err = cf_error(flow.counterfactual, scm, pool.test, base.train)
            print(
                f'  {n:>7} rows, {epochs:>4} epochs ({steps(n, epochs):>6} steps), flow seed {seed}: '
                f'{err:.4f}   '
                f'({time.perf_counter() - t:.0f} s)',
                flush=True,
            )


def draws(name: str, n: int, patience: int = 30):
    ("The flow's counterfactual error at the paper's settings on `n` independent draws of the causal-model "
     "pool.")
    torch.set_num_threads(1)
    scm, ref = get_scm(name), PAPER_FLOW_CF_ERROR[name]
    print(
        f"{name}: counterfactual error at the paper's settings (20 000 rows, 1000 epochs, flow seed 0) on "
        f"{n} "
        f'draws of the causal-model pool, each scored on its own test split; original work (reference): {ref}'
    )

    def score(draw: int) -> float:
        pool = make_pools(name, draw).causal
        flow = fit_flow(scm, pool, 'paper', fit=FlowFit(patience=patience),
                        seed=0, cache=False, verbose=False)
        with torch.no_grad():
            return cf_error(flow.counterfactual, scm, pool.test, pool.train)

    over_draws(name, n, score, lambda e: e <= 1.1 * ref, f'within 1.1x of the original ({1.1 * ref:.4f})')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm', choices=SCM_NAMES, help='a paper SCM, e.g. collider-lin')
    ap.add_argument(
        '--runs',
        type=runs_arg,
        default=runs_arg('20000:1000,80000:1000,80000:250,320000:250'),
        help='training rows:epochs pairs (default: %(default)s)',
    )
    ap.add_argument(
        '--seeds', type=lambda s: [int(v) for v in s.split(',')], default=[0, 1], help='flow seeds, e.g. 0,1'
    )
    ap.add_argument(
        '--patience',
        type=int,
        default=30,
        help="plateau patience in epochs (the paper's: 30; the original code's settings: 60)",
    )
    ap.add_argument(
        '--draws',
        type=int,
        default=0,
        help="instead of --runs: fit the paper's settings on this many draws of the pool "
        "(pool seeds 0 … N-1)",
    )
    a = ap.parse_args()
    if a.draws < 0:
        ap.error(f'--draws takes a number of pool draws ≥ 1, got {a.draws}')
    if a.draws:
        draws(a.scm, a.draws, a.patience)
    else:
        main(a.scm, a.runs, a.seeds, a.patience)

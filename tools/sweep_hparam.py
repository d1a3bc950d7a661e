"""Choose one of CARMA's hyperparameters per SCM on the VALIDATION people (never the test people).

For each value v, trains `--seeds` CARMA models at paper settings (stacked) with hparams
{PARAM: v} (plus any `--set key=value`), serves the rejected people of the recourse validation split,
and prints cost, causal validity and acts next to the oracle's cost on the same people. The value kept
per SCM is the one minimising cost + (1 - validity) averaged over seeds, the selection rule of SPEC §8.
Used for our two additions, the hinge temperature factor and the shift-clamp scale:

    python tools/sweep_hparam.py loan temperature 0,1,2,4,8 --seeds 4
    python tools/sweep_hparam.py chain-nlin shift_scale 1,2,3 --seeds 4
    python tools/sweep_hparam.py loan margin 0.003,0.05 --variant vaca      # CARMA with VACA (chapter 9)
    python tools/sweep_hparam.py loan temperature 1,4 --variant weighted    # preference weights (chapter 8)

With `--variant weighted` the paper's preference weights and prior are used and the cost (and the
oracle's) is the weighted one.
"""
import argparse
import time

import pandas as pd
import torch

from carma_nb.carma import train_carma_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import cached_oracle, oracle_reference
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS
from carma_nb.recourse import evaluate_recourse, recourse_problem, rejected
from carma_nb.vaca import fit_vaca


def main(name, param, values, seeds, fixed=None, variant=None):
    torch.set_num_threads(1)
    ref = oracle_reference(name, 'paper')
    cm = (fit_vaca if variant == 'vaca' else fit_flow)(name, ref.pools.causal, 'paper', verbose=False)
    w = PAPER_PREFERENCE_WEIGHTS if variant == 'weighted' else None
    kw = {'weights': w, 'prior': 'preference'} if w else {'variant': variant}
    problem = recourse_problem(name, ref.pools, w)
    people = rejected(ref.clf, ref.pools.recourse.val.x)
    orc = cached_oracle(name, ref.pools, ref.clf, people, weights=w)
    ocost = evaluate_recourse(problem, ref.clf, people, orc.mask, orc.values, orc.x_cf, orc.found).metrics['cost x100']
    name_v = f'{name} ({variant})' if variant else name
    for k in values:
        t0 = time.perf_counter()
        models = train_carma_seeds(name, ref.clf, cm, ref.pools.recourse, seeds=range(seeds), hparams={**(fixed or {}), param: k},
                                   profile='paper', verbose=False, **kw)
        df = pd.DataFrame([evaluate_recourse(problem, ref.clf, people, r.mask, r.values, r.x_cf).metrics
                           for r in (m.recommend(people) for m in models)])
        score = (df['cost x100'] / 100 + 1 - df['validity %'] / 100).mean()
        print(f"{name_v} (validation, {len(people)} people) {param}={k:g}: cost {df['cost x100'].round(2).tolist()} "
              f"(oracle {ocost:.2f}, ratio {df['cost x100'].mean() / ocost:.3f}), validity {df['validity %'].round(2).tolist()}, "
              f"acts {df['acts'].mean():.2f}, score {score:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm')
    ap.add_argument('param', help='a numeric CARMA hyperparameter, e.g. temperature, shift_scale, margin')
    ap.add_argument('values', help='comma-separated values, e.g. 0,1,4')
    ap.add_argument('--seeds', type=int, default=4)
    ap.add_argument('--variant', choices=['vaca', 'weighted'], default=None, help='CARMA with VACA, or with preference weights')
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a fixed numeric override (repeatable)')
    a = ap.parse_args()
    fixed = {k: float(v) for k, v in (kv.split('=', 1) for kv in a.set)}
    main(a.scm, a.param, [float(k) for k in a.values.split(',')], a.seeds, fixed, a.variant)

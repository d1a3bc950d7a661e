"""Archived with the study `studies/carma_additions.ipynb`: written for the CARMA API before chapter 9's
recipes (hyperparameter keys temperature, shift_scale, restarts, refine_epochs, polish_epochs), it is
the record of how chapter 9's settings were chosen. To re-run a sweep, express each setting as a
chapter-8 `Recipe` and pass it as `CarmaOptions(recipe=...)`.

Choose one of CARMA's hyperparameters per SCM on the VALIDATION people (never the test people).

For each value v, trains `--seeds` CARMA models at paper settings (stacked) with hparams
{PARAM: v} (plus any `--set key=value`), serves the rejected people of the recourse validation split,
and prints cost, causal validity and acts next to the oracle's cost on the same people. The value kept
per SCM is the one minimising cost + (1 - validity) averaged over seeds, the paper's selection rule.
Used for our two additions, the hinge temperature factor and the shift-clamp scale:

    python tools/sweep_hparam.py loan temperature 0,1,2,4,8 --seeds 4
    python tools/sweep_hparam.py chain-nlin shift_scale 1,2,3 --seeds 4
    python tools/sweep_hparam.py loan margin 0.003,0.05 --variant vaca      # CARMA with VACA (chapter 11)
    python tools/sweep_hparam.py loan temperature 1,4 --variant weighted    # preference weights (chapter 10)

With `--variant weighted` the paper's preference weights and prior are used and the cost (and the
oracle's) is the weighted one.
"""

import argparse
import time

import pandas as pd
import torch

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import cached_oracle, oracle_reference
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS
from carma_nb.recourse import evaluate_recourse, recourse_problem, rejected
from carma_nb.vaca import fit_vaca


WHOLE_NUMBERS = (
    'epochs',
    'batch',
    'restarts',
    'polish_epochs',
    'refine_epochs',
)  # hyperparameters that must be ints


def hparam_value(key: str, text: str):
    "A command-line hyperparameter value: an int for the whole-number ones, a float otherwise."
    return int(float(text)) if key in WHOLE_NUMBERS else float(text)


def validation_setup(name, weights=None):
    ("The paper-profile reference of `name`, its recourse problem, its rejected validation people and the "
     "oracle's cost on them.")
    ref = oracle_reference(name, 'paper')
    problem = recourse_problem(name, ref.pools, weights)
    people = rejected(ref.clf, ref.pools.recourse.val.x)
    orc = cached_oracle(problem, ref.clf, people)
    ocost = evaluate_recourse(problem, ref.clf, people, orc).metrics['cost x100']
    return ref, problem, people, ocost


def score_models(models, problem, clf, people) -> pd.DataFrame:
    ("One row of recourse metrics per trained CARMA model, on `people`, with the % of people acting on each "
     "feature.")
    rows = []
    for r in (m.recommend(people) for m in models):
        rep = evaluate_recourse(problem, clf, people, r)
        rows.append({**rep.metrics, **{f'{n} %': v for n, v in rep.per_feature['intervened %'].items()}})
    return pd.DataFrame(rows)


def main(name, param, values, seeds, fixed=None, variant=None):
    torch.set_num_threads(1)
    w = PAPER_PREFERENCE_WEIGHTS if variant == 'weighted' else None
    ref, problem, people, ocost = validation_setup(name, w)
    cm = (fit_vaca if variant == 'vaca' else fit_flow)(name, ref.pools.causal, 'paper', verbose=False)
    name_v = f'{name} ({variant})' if variant else name
    for k in values:
        t0 = time.perf_counter()
        models = train_carma_seeds(
            name,
            ref.clf,
            cm,
            ref.pools.recourse,
            range(seeds),
            CarmaOptions(hparams={**(fixed or {}), param: k}, profile='paper', verbose=False, weights=w),
        )
        df = score_models(models, problem, ref.clf, people)
        score = (df['cost x100'] / 100 + 1 - df['validity %'] / 100).mean()
        print(
            f"{name_v} (validation, {len(people)} people) {param}={k:g}: cost "
            f"{df['cost x100'].round(2).tolist()} "
            f"(oracle {ocost:.2f}, ratio {df['cost x100'].mean() / ocost:.3f}), validity "
            f"{df['validity %'].round(2).tolist()}, "
            f"acts {df['acts'].mean():.2f}, score {score:.4f}, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        used = {n: round(float(df[f'{n} %'].mean()), 1) for n in models[0].names if f'{n} %' in df}
        print(f"    % of people acting on each feature (mean over seeds): {used}", flush=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm')
    ap.add_argument('param', help='a numeric CARMA hyperparameter, e.g. temperature, shift_scale, margin')
    ap.add_argument('values', help='comma-separated values, e.g. 0,1,4')
    ap.add_argument('--seeds', type=int, default=4)
    ap.add_argument(
        '--variant',
        choices=['vaca', 'weighted'],
        default=None,
        help='CARMA with VACA, or with preference weights',
    )
    ap.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='a fixed numeric override (repeatable)',
    )
    a = ap.parse_args()
    fixed = {k: hparam_value(k, v) for k, v in (kv.split('=', 1) for kv in a.set)}
    main(a.scm, a.param, [hparam_value(a.param, k) for k in a.values.split(',')], a.seeds, fixed, a.variant)

"""Does a CARMA seed give the same model trained alone as trained in a stack with other seeds?

    python tools/stack_independence.py [--scm NAME ...] [--recipe paper|improved] [--profile paper] [--seeds 0 1 2 3]

For each SCM, trains the last of `--seeds` alone and all of them as one stack (no cache), at the profile's
epochs, and prints the largest weight difference and how many rejected test people get another mask.
Chapter 8 ("Seeds are trained together") explains why the two must agree bitwise; `--recipe improved`
(chapter 9) adds candidates per seed and the extra training phases.
"""

import argparse
import time

import torch

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.classifier import train_classifier
from carma_nb.core import get_profile
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.recourse import rejected
from carma_nb.scm import SCM_NAMES


def compare(scm: str, profile, recipe: str, seeds: list[int]) -> dict:
    "Train seed `seeds[-1]` alone and in the stack `seeds`; compare weights and served masks."
    p = get_profile(profile)
    pools = make_pools(scm, 0)
    clf = train_classifier(scm, pools.classifier, p, verbose=False)
    flow = fit_flow(scm, pools.causal, p, verbose=False)
    t = time.perf_counter()
    options = CarmaOptions(recipe=recipe, profile=p, cache=False, verbose=False)
    alone = train_carma_seeds(scm, clf, flow, pools.recourse, seeds[-1:], options)[0]
    t_alone = time.perf_counter() - t
    t = time.perf_counter()
    stacked = train_carma_seeds(scm, clf, flow, pools.recourse, seeds, options)[-1]
    t_stack = time.perf_counter() - t
    a, b = alone.state_dict(), stacked.state_dict()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    people = rejected(clf, pools.recourse.test.x)
    other = int((alone.recommend(people).mask != stacked.recommend(people).mask).any(1).sum())
    return {
        'scm': scm,
        'bitwise': all(torch.equal(a[k], b[k]) for k in a),
        'max |Δw|': diff,
        'people with another mask': other,
        'people': len(people),
        's alone': round(t_alone, 1),
        f's stack of {len(seeds)}': round(t_stack, 1),
    }


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--scm', nargs='+', default=list(SCM_NAMES))
    ap.add_argument('--recipe', choices=['paper', 'improved'], default='paper')
    ap.add_argument('--profile', default='paper')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3])
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f'profile {a.profile}, recipe {a.recipe}, seed {a.seeds[-1]} alone vs in the stack {a.seeds}',
        flush=True,
    )
    for scm in a.scm:
        print(compare(scm, a.profile, a.recipe, a.seeds), flush=True)

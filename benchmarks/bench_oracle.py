"""Oracle speed on loan: the per-candidate loop, the batched search of every candidate, and early exit.

  A. the loop oracle (`oracle_recourse_loop`, one candidate at a time) on `--loop-people` rejected loan
     test people with the full grid (65 535 candidates each), timed in full, not extrapolated;
  B. the batched oracle on the same people (results checked identical), and on all rejected loan test
     people in one call with the default memory budget, searching every candidate (`early_exit=False`);
  C. the same people with early exit (the default: candidates in increasing cost), answers checked
     identical to B's; peak resident memory of the process is reported after each.
Ratios come from one run of this script.

    python benchmarks/bench_oracle.py [--loop-people 3] [--write]
"""

import argparse
import resource
import time

import torch

from _results import machine_note, write_section
from carma_nb.classifier import train_classifier
from carma_nb.data import make_pools
from carma_nb.oracle import oracle_recourse, oracle_recourse_loop
from carma_nb.recourse import recourse_problem, rejected


def main(loop_people=3, write=False):
    pools = make_pools('loan', 0)
    clf = train_classifier('loan', pools.classifier, profile='paper', verbose=False)
    problem = recourse_problem('loan', pools)
    people = rejected(clf, pools.recourse.test.x)
    few = people[:loop_people]

    t0 = time.perf_counter()
    slow = oracle_recourse_loop(problem, clf, few)
    t_loop = (time.perf_counter() - t0) / len(few)
    t0 = time.perf_counter()
    fast = oracle_recourse(problem, clf, few, verbose=False)
    t_few = (time.perf_counter() - t0) / len(few)
    assert torch.equal(slow.index, fast.index) and torch.equal(slow.mask, fast.mask)

    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss0 = rss()
    t0 = time.perf_counter()
    full = oracle_recourse(problem, clf, people, early_exit=False, verbose=False)
    t_all = time.perf_counter() - t0
    rss1 = rss()
    t0 = time.perf_counter()
    early = oracle_recourse(problem, clf, people, verbose=False)
    t_early = time.perf_counter() - t0
    rss2 = rss()
    same = all(torch.equal(getattr(full, k), getattr(early, k)) for k in ('mask', 'values', 'index', 'found'))
    assert same, 'early exit chose other actions than the full search'
    per = t_all / len(people)
    lines = [
        machine_note(),
        '',
        '| measurement | value | target | status |',
        '|---|---|---|---|',
        f"| loop oracle, full grid, {len(few)} people (timed in full) | {t_loop:.1f} s per person | | |",
        f"| batched oracle, same people (identical actions) | {t_few * 1e3:.1f} ms per person | | |",
        f"| every candidate: {len(people)} rejected loan test people x 65 535 | {t_all:.1f} s "
        f"({per * 1e3:.1f} ms per person) | < 5 min | "
        f"{'met' if t_all < 300 else 'MISSED'} |",
        f"| early exit (the default), same people: identical actions for all {len(people)} | {t_early:.2f} s "
        f"({t_early / len(people) * 1e3:.2f} ms per person) | | |",
        f"| speed-up of early exit over searching every candidate | {t_all / t_early:.1f}x | >= 10x | "
        f"{'met' if t_all / t_early >= 10 else 'MISSED'} |",
        f"| speed-up per person, batched (whole set) vs loop | {t_loop / per:,.0f}x | >= 1 000x | "
        f"{'met' if t_loop / per >= 1000 else 'MISSED'} |",
        f"| peak RSS (before -> after every candidate -> after early exit) | "
        f"{rss0:.0f} -> {rss1:.0f} -> {rss2:.0f} MiB | bounded | |",
        f"| found a valid action | {int(full.found.sum())} of {len(people)} | | |",
        "| original implementation (paper Table 1) | 53.6 s per loan person | | |",
    ]
    text = '\n'.join(lines)
    print(text)
    if write:
        write_section('bench_oracle', 'Oracle (`python benchmarks/bench_oracle.py`)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--loop-people', type=int, default=3, help='people timed with the full loop oracle')
    ap.add_argument(
        '--write', action='store_true', help='rewrite the oracle section of benchmarks/RESULTS.md'
    )
    a = ap.parse_args()
    main(a.loop_people, a.write)

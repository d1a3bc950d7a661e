"""CARMA speed on loan: training at the paper's settings and serving.

  A. train one loan CARMA model at paper settings (450 epochs, batch 256), not cached, one torch thread,
     with the paper's recipe (chapter 8) and with the improved recipe (chapter 9), for what it costs;
  B. train ten seeds at once (stacked, the paper's recipe) and report the time per model, and its ratio to A;
  C. latency per person at batch size 1 (median over 200 people) of `recommend`, the one serving path,
     with the model's defaults (paper recipe: every act served), and with idle acts dropped (the improved
     recipe's setting, idle_tol 0.05);
  D. the whole rejected test set in one batch: microseconds per person, both settings.
Targets (issue 21): ≤ 0.15 ms at batch size 1 and ≤ 3 µs per person batched, with the defaults.
Ratios come from one run; absolute times on this shared machine are noisy.

    python benchmarks/bench_carma.py [--write] [--seeds 10]
"""

import argparse
import statistics
import time

import torch

from _results import machine_note, median_time, write_section
from carma_nb.training import CarmaOptions, train_carma, train_carma_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference


def latency(fn, people, n=200):
    ts = []
    for i in range(min(n, len(people))):
        x = people[i : i + 1]
        t0 = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(write=False, seeds=10):
    torch.set_num_threads(1)
    ref = oracle_reference('loan', 'paper')
    flow = fit_flow('loan', ref.pools.causal, 'paper', verbose=False)
    fit = lambda recipe: train_carma(
        'loan', ref.clf, flow, ref.pools.recourse, recipe=recipe, profile='paper', cache=False, verbose=False
    )
    t0 = time.perf_counter()
    one = fit('paper')
    one_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit('improved')
    improved_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    options = CarmaOptions(profile='paper', cache=False, verbose=False)
    train_carma_seeds('loan', ref.clf, flow, ref.pools.recourse, range(seeds), options)
    many_s = (time.perf_counter() - t0) / seeds
    people = ref.people
    lat = latency(one.recommend, people)
    batched = median_time(lambda: one.recommend(people), repeat=5) / len(people)
    one.idle_tol = 0.05
    lat_idle = latency(one.recommend, people)
    batched_idle = median_time(lambda: one.recommend(people), repeat=5) / len(people)
    lines = [
        machine_note('ratios are the claims'),
        '',
        '| measurement | value | target |',
        '|---|---|---|',
        f'| A. one loan model, 450 epochs, 1 thread, the paper\'s recipe | {one_s:.1f} s | |',
        f'| A. the same with the improved recipe (chapter 9) | {improved_s:.1f} s ({improved_s / one_s:.1f}× '
        f'the paper\'s) | |',
        f'| B. {seeds} seeds stacked, per model (paper\'s recipe) | {many_s:.1f} s ({one_s / many_s:.1f}× '
        f'faster than A) | |',
        f'| C. latency at batch size 1, `recommend` with its defaults | {lat * 1e3:.3f} ms | ≤ 0.15 ms |',
        f'| C. the same, idle acts dropped | {lat_idle * 1e3:.3f} ms ({lat_idle / lat:.1f}× C) | |',
        f'| D. whole test set ({len(people)} people) in one batch, defaults | {batched * 1e6:.2f} µs per '
        f'person | ≤ 3 µs |',
        f'| D. the same, idle acts dropped | {batched_idle * 1e6:.2f} µs per person '
        f'({batched_idle / batched:.1f}× D) | |',
    ]
    text = '\n'.join(lines)
    print(text)
    if write:
        write_section('carma', 'CARMA training and inference (loan, paper settings)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
    ap.add_argument('--seeds', type=int, default=10)
    a = ap.parse_args()
    main(a.write, a.seeds)

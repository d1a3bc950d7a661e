"""CARMA speed (issue #5): training at paper settings and inference, on loan.

  A. train one loan CARMA model at paper settings (450 epochs, batch 256), not cached, one torch thread,
     with our additions as configured for loan (its restart candidates, trained stacked, the kept one is
     the model: one since polishing was added; 150 polish epochs of the action network), and the same with
     the paper's procedure (one candidate, no polish) for what the additions cost;
  B. train ten seeds at once (stacked, additions included) and report the time per model, and its ratio to A;
  C. latency per person at batch size 1 (median over 200 people): `recommend` (NumPy path for small
     batches) vs the torch path, and their ratio;
  D. the whole rejected test set in one batch: microseconds per person, for the model as served
     (subnormal weights flushed to zero when loaded) and for the same trained weights unflushed;
  E. what dropping idle acts (`recommend(x, idle_tol=0.05)`, the default of `carma-nb recommend`) costs:
     the whole test set in one batch and one person at a time, as ratios to D and C.
The NumPy and torch paths are checked to agree before they are timed. Ratios come from one run.

    python benchmarks/bench_carma.py [--write] [--seeds 10]
"""
import argparse
import copy
import statistics
import time

import torch

from _results import machine, median_time, write_section
from carma_nb.carma import _carma_checkpoints, _carma_from_checkpoint, _recommend, carma_hparams, flush_subnormal_, train_carma_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference


def latency(fn, people, n=200):
    ts = []
    for i in range(min(n, len(people))):
        x = people[i:i + 1]
        t0 = time.perf_counter(); fn(x); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(write=False, seeds=10):
    torch.set_num_threads(1)
    ref = oracle_reference('loan', 'paper')
    flow = fit_flow('loan', ref.pools.causal, 'paper', verbose=False)
    t0 = time.perf_counter()
    ck = _carma_checkpoints('loan', ref.clf, flow, ref.pools.recourse, [0], None, 'paper', None, 'uniform', None, False, False)[0]
    one = _carma_from_checkpoint(ck, flow, ref.clf)                     # what train_carma_seeds returns: subnormals flushed
    one_s = time.perf_counter() - t0
    raw = _carma_from_checkpoint(ck, flow, ref.clf, flush=False)        # the same weights as trained
    n_sub = flush_subnormal_(copy.deepcopy(raw.mask_net)) + flush_subnormal_(copy.deepcopy(raw.action_net))
    t0 = time.perf_counter()
    train_carma_seeds('loan', ref.clf, flow, ref.pools.recourse, seeds=[0], hparams={'restarts': 1, 'polish_epochs': 0}, profile='paper', cache=False, verbose=False)
    single_s = time.perf_counter() - t0
    R, P = carma_hparams('loan')['restarts'], carma_hparams('loan').get('polish_epochs', 0)
    t0 = time.perf_counter()
    train_carma_seeds('loan', ref.clf, flow, ref.pools.recourse, seeds=range(seeds), profile='paper', cache=False, verbose=False)
    many_s = (time.perf_counter() - t0) / seeds
    people = ref.people
    fast, slow = one.recommend(people[:64]), _recommend(one, people[:64])
    assert torch.equal(fast.mask, slow.mask) and torch.allclose(fast.values, slow.values, atol=1e-3)
    lat_fast, lat_torch = latency(one.recommend, people), latency(lambda x: _recommend(one, x), people)
    batched = median_time(lambda: one.recommend(people), repeat=5) / len(people)
    batched_raw = median_time(lambda: raw.recommend(people), repeat=5) / len(people)
    r_one, r_raw = one.recommend(people), raw.recommend(people)
    assert torch.equal(r_one.mask, r_raw.mask) and torch.equal(r_one.values, r_raw.values)
    idle = lambda x: one.recommend(x, idle_tol=0.05)
    batched_idle = median_time(lambda: idle(people), repeat=5) / len(people)
    lat_idle = latency(idle, people)
    dropped = float((r_one.mask.sum(1) - idle(people).mask.sum(1)).double().mean())
    lines = [f"Machine: {machine()} (shared; absolute times are noisy, ratios are the claims).", '',
             '| measurement | value | target |', '|---|---|---|',
             f'| A. one loan model, 450 epochs, 1 thread, {R} restart candidate{"s" if R > 1 else ""}, {P} polish epochs | {one_s:.1f} s | < 40 s |',
             f'| A. the paper\'s procedure: one candidate, no polish | {single_s:.1f} s (A takes {one_s / single_s:.1f}× as long) | |',
             f'| B. {seeds} seeds stacked, per model | {many_s:.1f} s ({one_s / many_s:.1f}× faster than A) | |',
             f'| C. latency at batch size 1, `recommend` (NumPy path) | {lat_fast * 1e3:.3f} ms | ≤ 0.15 ms |',
             f'| C. latency at batch size 1, torch path | {lat_torch * 1e3:.3f} ms ({lat_torch / lat_fast:.1f}× slower) | |',
             f'| D. whole test set ({len(people)} people) in one batch | {batched * 1e6:.2f} µs per person | ≤ 3 µs |',
             f'| D. same, the {n_sub} subnormal weights kept (not flushed; identical recommendations) | {batched_raw * 1e6:.2f} µs per person ({batched_raw / batched:.1f}× slower) | |',
             f'| E. whole test set, idle acts dropped ({dropped:.2f} acts per person fewer) | {batched_idle * 1e6:.2f} µs per person ({batched_idle / batched:.1f}× D) | |',
             f'| E. latency at batch size 1, idle acts dropped (torch path) | {lat_idle * 1e3:.3f} ms ({lat_idle / lat_fast:.1f}× C) | |']
    text = '\n'.join(lines)
    print(text)
    if write: write_section('carma', 'CARMA training and inference (loan, paper settings)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--write', action='store_true', help='update benchmarks/RESULTS.md')
    ap.add_argument('--seeds', type=int, default=10)
    a = ap.parse_args()
    main(a.write, a.seeds)

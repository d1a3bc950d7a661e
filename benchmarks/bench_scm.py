"""SCM counterfactual speed: batched `SCM.counterfactual` vs a per-row Python loop over the same work.

Two workloads on the loan SCM (issue #2):
  A. one person against all 65 535 oracle candidate actions (15 grid values + "no intervention" on
     each of the 4 actionable features, minus the empty action), in one call;
  B. 100 000 people with one action each, in one call.
The loop reference calls `counterfactual` once per row; it is timed on a subset and reported per row,
then scaled to the full workload (said so in the output). Ratios come from one run of this script.

    python benchmarks/bench_scm.py            # print
    python benchmarks/bench_scm.py --write    # also rewrite the SCM section of benchmarks/RESULTS.md
"""

import argparse

import torch

from _results import machine_note, median_time as best_of, write_section
from carma_nb.data import make_pools
from carma_nb.scm import get_scm


def oracle_candidates(scm, person, bins=15):
    """All oracle candidate actions of chapter 6 (the paper's grid) for one person: mask (m, D) and
    values (m, D)."""
    x = person[0]
    tr = make_pools(scm, 0).recourse.train.x
    lo, hi = tr.min(0).values, tr.max(0).values
    options = []
    for j in scm.actionable:
        grid = torch.linspace(2 * lo[j] - x[j], 2 * hi[j] - x[j], bins)
        options.append(torch.cat([torch.tensor([float('nan')]), grid]))  # nan = no intervention
    combos = torch.cartesian_prod(*options)[1:]  # drop the empty action
    mask = torch.zeros(len(combos), scm.n_features, dtype=torch.bool)
    values = person.expand(len(combos), -1).clone()
    mask[:, scm.actionable] = ~combos.isnan()
    values[:, scm.actionable] = torch.where(combos.isnan(), values[:, scm.actionable], combos)
    return mask, values


def loop_per_row(scm, x, mask, values, rows):
    """Teaching/reference path: one `counterfactual` call per row (x broadcast if it has one row)."""

    def run():
        for r in range(rows):
            scm.counterfactual(x[r : r + 1] if len(x) > 1 else x, mask[r : r + 1], values[r : r + 1])

    return run


def main(write=False):
    torch.set_grad_enabled(False)
    scm = get_scm('loan')
    pools = make_pools(scm, 0)
    person = pools.recourse.test.x[:1]
    mask_a, values_a = oracle_candidates(scm, person)
    assert mask_a.shape == (65_535, 7)

    people = pools.recourse.train.x.repeat(10, 1)  # 100 000 people
    g = torch.Generator().manual_seed(0)
    mask_b = torch.zeros(len(people), 7, dtype=torch.bool)
    mask_b[:, scm.actionable] = torch.rand(len(people), 4, generator=g) < 0.5
    values_b = people + torch.randn(people.shape, generator=g) * mask_b

    loop_rows = 2000
    rows = []
    for label, x, m, v in (
        ('A: 1 person x 65 535 candidate actions', person, mask_a, values_a),
        ('B: 100 000 people x 1 action', people, mask_b, values_b),
    ):
        with torch.inference_mode():
            t_batch = best_of(lambda: scm.counterfactual(x, m, v))
            t_loop_row = best_of(loop_per_row(scm, x, m, v, loop_rows), repeat=3) / loop_rows
        n = len(m)
        rows.append((label, n, t_batch, t_loop_row * n, t_loop_row * n / t_batch))

    # cross-check: the loop and the batched call agree on the rows the loop computed
    batched = scm.counterfactual(person, mask_a[:100], values_a[:100])
    looped = torch.cat(
        [scm.counterfactual(person, mask_a[r : r + 1], values_a[r : r + 1]) for r in range(100)]
    )
    assert torch.equal(batched, looped)

    lines = [
        machine_note(),
        f"Loop timed on the first {loop_rows} rows and scaled to the workload.",
        '',
        '| workload | rows | batched (ms) | per-row loop, scaled (s) | speed-up | target < 50 ms |',
        '|---|---|---|---|---|---|',
    ]
    for label, n, tb, tl, ratio in rows:
        lines.append(
            f"| {label} | {n:,} | {tb * 1e3:.1f} | {tl:.1f} | {ratio:,.0f}x | "
            f"{'met' if tb < 0.05 else 'MISSED'} |"
        )
    text = '\n'.join(lines)
    print(text)
    if write:
        write_section('bench_scm', 'SCM counterfactuals (`python benchmarks/bench_scm.py`)', text)
    return rows


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--write', action='store_true', help='rewrite the SCM section of benchmarks/RESULTS.md')
    main(ap.parse_args().write)

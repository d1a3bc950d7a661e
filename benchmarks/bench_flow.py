"""Causal-flow speed (issue #3): loan fit at paper settings, and counterfactuals for 100 000 loan rows.

  A. fit the loan flow with the paper's settings (1 000 epochs, batch 4 000), not cached (on one thread: every trainer pins itself to one);
  B. hard-intervention counterfactuals for 100 000 loan rows in one call, through
     - the prepared fast path (`CausalFlow.counterfactual`: masked weights precomputed once), and
     - the unprepared stock-zuko path: the same sweeps, each building zuko's transform objects
       (`MaskedAutoregressiveTransform.meta`) whose MaskedLinear layers re-apply their masks.
Both paths are checked to agree before they are timed. Ratios come from one run of this script.

    python benchmarks/bench_flow.py [--write]
"""

import argparse
import time

import torch

from _results import machine_note, median_time, write_section
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.scm import get_scm


def zuko_counterfactual(flow, x, mask, values):
    """Reference path on stock zuko objects: abduct with zuko's transform, sweep with zuko's inverse."""
    mat = flow.maf.transform.transforms[0]
    zf = flow.standardise(x)
    u = flow.maf().transform(zf)
    zv = flow.standardise(values)
    z = torch.where(mask, zv, zf)
    for _ in range(flow.depth):
        z = torch.where(mask, zv, mat.meta(None, z).inv(u))
    return flow.unstandardise(z)


def main(write=False):
    scm = get_scm('loan')
    pools = make_pools(scm, 0)
    t0 = time.perf_counter()
    flow = fit_flow(scm, pools.causal, profile='paper', cache=False, verbose=False)
    fit_s = time.perf_counter() - t0

    torch.set_grad_enabled(False)
    x = pools.causal.train.x.repeat(5, 1)  # 100 000 rows
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(len(x), 7, dtype=torch.bool)
    mask[:, scm.actionable] = torch.rand(len(x), 4, generator=g) < 0.5
    values = x + torch.randn(x.shape, generator=g) * mask
    fast = flow.counterfactual(x, mask, values)
    ref = zuko_counterfactual(flow, x, mask, values)
    assert torch.allclose(fast, ref, atol=1e-4, rtol=1e-4), (fast - ref).abs().max()

    t_fast = median_time(lambda: flow.counterfactual(x, mask, values))
    t_zuko = median_time(lambda: zuko_counterfactual(flow, x, mask, values))
    lines = [
        machine_note(),
        '',
        '| measurement | time | target | status |',
        '|---|---|---|---|',
        f"| loan flow fit (paper: 1 000 epochs, batch 4 000; uncached, 1 thread) | {fit_s:.1f} s | < 20 s | "
        f"{'met' if fit_s < 20 else 'MISSED'} |",
        f"| 100 000 loan counterfactuals, prepared fast path, one call | {t_fast * 1e3:.1f} ms | < 100 ms | "
        f"{'met' if t_fast < 0.1 else 'MISSED'} |",
        f"| same, unprepared stock-zuko path | {t_zuko * 1e3:.1f} ms | | |",
        f"| speed-up of the prepared path | {t_zuko / t_fast:.2f}x | | |",
    ]
    text = '\n'.join(lines)
    print(text)
    if write:
        write_section('bench_flow', 'Causal flow (`python benchmarks/bench_flow.py`)', text)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--write', action='store_true', help='rewrite the flow section of benchmarks/RESULTS.md')
    main(ap.parse_args().write)

"""Where a flow's counterfactual error comes from (chapter 4), on one SCM with linear equations.

Used by studies/flow_counterfactual_error.ipynb (output committed as figures/studies/flow_cf_diagnostics.txt).

Prints, for the paper-profile flow of the SCM:
  1. the counterfactual error of the flow (chapter 4's metric, causal-model test rows);
  2. the error floor set by the data: the same metric for the SCM whose linear equations are fitted by
     least squares on the same training rows (an estimate of what 20 000 rows allow);
  3. how much each node's learned log-scale s_j varies across the test rows (the truth has one scale);
  4. the error on the validation rows of flows trained with batches of 1 000 and with three times the
     epochs (the optimiser variants `fit_flow` offers);
  5. how the error of each intervention splits into a part linear in the intervened change (a wrong
     slope) and the rest;
  6. the error on the validation rows of a flow trained with a penalty on the variance of every s_j over
     the batch (a conditioner pushed to one scale per node), and of flows with other conditioner widths.

    python studies/tools/flow_cf_diagnostics.py collider-lin
"""

import argparse
import math

import numpy as np
import torch

from carma_nb.data import make_pools
from carma_nb.data import StandardScaler
from carma_nb.flow import CausalFlow, _do, fit_flow, flow_hidden, interventions
from carma_nb.scm import get_scm


def cf_error(counterfactual, scm, split, train) -> float:
    "Chapter 4's counterfactual error of `counterfactual(x, mask, values)` on the rows of `split`."
    errs = []
    for name, _, v in interventions(scm, train.x):
        m, vals = _do(scm.n_features, scm.index(name), v, len(split.x))
        errs.append(
            float(
                (counterfactual(split.x, m, vals) - scm.counterfactual(split.x, m, vals)).norm(dim=1).mean()
            )
        )
    return float(np.mean(errs))


def least_squares_scm(scm, x_train: torch.Tensor):
    ("Counterfactuals of the SCM whose equations x_j = c_j + β_j·x_pa(j) + u_j are fitted by least squares "
     "(nodes in topological order).")
    X = x_train.double().numpy()
    coef = {
        j: np.linalg.lstsq(np.c_[X[:, scm.parents(j)], np.ones(len(X))], X[:, j], rcond=None)[0]
        for j in range(scm.n_features)
        if scm.parents(j)
    }
    mean = lambda j, cols: np.c_[cols[:, scm.parents(j)], np.ones(len(cols))] @ coef[j]

    def counterfactual(x, mask, values):
        xf, m, v = x.double().numpy(), mask.numpy(), values.double().numpy()
        u = {j: xf[:, j] - mean(j, xf) for j in coef}
        cf = xf.copy()
        for j in range(scm.n_features):
            if j in coef:
                cf[:, j] = mean(j, cf) + u[j]
            cf[:, j] = np.where(m[:, j], v[:, j], cf[:, j])
        return torch.from_numpy(cf).float()

    return counterfactual


def error_split(flow, scm, split, train):
    ("Per intervention: mean |error| of the changed feature(s), and of what is left after removing the part "
     "linear in the change.")
    out = []
    for name, q, v in interventions(scm, train.x):
        j = scm.index(name)
        m, vals = _do(scm.n_features, j, v, len(split.x))
        e = (flow.counterfactual(split.x, m, vals) - scm.counterfactual(split.x, m, vals)).numpy()
        d = (vals[:, j] - split.x[:, j]).numpy()
        A = np.c_[d, np.ones_like(d)]
        resid = e - A @ np.linalg.lstsq(A, e, rcond=None)[0]
        out.append(
            f'do({name} = q{q:g}): |e| {np.abs(e).sum(1).mean():.4f}, after the linear part '
            f'{np.abs(resid).sum(1).mean():.4f}'
        )
    return out


def fit_with_scale_penalty(scm, pool, gamma, epochs=1000, batch=4000, seed=0):
    "fit_flow's maximum likelihood (same init, batches, schedule) plus gamma * sum_j Var_batch(s_j)."
    torch.manual_seed(seed)
    scaler = StandardScaler().fit(pool.train.x)
    flow = CausalFlow(scm.name, flow_hidden(scm), scaler).train()
    opt = torch.optim.Adam(flow.maf.parameters(), lr=1e-3, fused=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.95, patience=30)
    ztr, zva = scaler.transform(pool.train.x), scaler.transform(pool.val.x)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for zb in ztr[torch.randperm(len(ztr), generator=g)].split(batch):
            b, s = flow.conditioner(zb)
            u = zb * torch.exp(s) + b
            loss = -(-0.5 * u**2 - 0.5 * math.log(2 * math.pi) + s).sum(-1).mean() + gamma * s.var(0).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            sched.step(float(-flow.log_prob_std(zva).mean()))
    return flow.freeze()


def main(name):
    torch.set_num_threads(1)
    scm, pools = get_scm(name), make_pools(name)
    pool = pools.causal
    flow = fit_flow(scm, pool, 'paper', verbose=False)
    with torch.no_grad():
        print(
            f'{name}: flow counterfactual error (test rows) '
            f'{cf_error(flow.counterfactual, scm, pool.test, pool.train):.4f}'
        )
        print(
            f'  least-squares floor, same training rows (test rows): '
            f'{cf_error(least_squares_scm(scm, pool.train.x), scm, pool.test, pool.train):.4f}'
        )
        _, s = flow.conditioner(flow.standardise(pool.test.x))
        print(
            '  std of the learned log-scale s_j over the test rows:',
            dict(zip(scm.names, s.std(0).double().numpy().round(4).tolist())),
        )
        print(
            f'  validation rows: paper settings '
            f'{cf_error(flow.counterfactual, scm, pool.val, pool.train):.4f}',
            flush=True,
        )
        for line in error_split(flow, scm, pool.val, pool.train):
            print('  validation rows:', line)
    for label, kw in (
        ('batch 1 000', {'batch': 1000}),
        ('3× the epochs', {'epochs': 3000}),
        *((f'conditioner {w}', {'hidden': (w,)}) for w in (4, 8, 128)),
    ):
        f = fit_flow(scm, pool, 'paper', verbose=False, **kw)  # trained outside no_grad
        with torch.no_grad():
            print(
                f'  validation rows: {label} {cf_error(f.counterfactual, scm, pool.val, pool.train):.4f}',
                flush=True,
            )
    f = fit_with_scale_penalty(scm, pool, gamma=10.0)
    with torch.no_grad():
        _, s = f.conditioner(f.standardise(pool.test.x))
        print(
            f'  validation rows: scale-variance penalty 10: '
            f'{cf_error(f.counterfactual, scm, pool.val, pool.train):.4f} '
            f'(std of s_j over the test rows '
            f'{dict(zip(scm.names, s.std(0).double().numpy().round(4).tolist()))})',
            flush=True,
        )


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scm', help='an SCM with linear equations, e.g. collider-lin')
    main(ap.parse_args().scm)

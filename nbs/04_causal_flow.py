# %%
#| default_exp flow

# %% [markdown]
# # The causal normalizing flow
#
# > A causal model learned from data and the causal graph, standing in for the unknown true SCM.
#
# The true SCM of chapter 1 is a luxury: in practice nobody knows a bank's applicants' structural
# equations. What one can often defend is the **causal graph** — age affects income, income affects
# savings — plus observational data. A **causal normalizing flow** (Javaloy, Sánchez-Martín & Valera,
# NeurIPS 2023) turns exactly that into a model that answers counterfactual questions, and CARMA uses
# it in place of the true SCM.
#
# The flow is a masked autoregressive flow with a single affine layer whose conditioner is masked by
# the causal graph instead of a full variable ordering. On standardised features $\tilde x$, for every
# node $i$,
#
# $$u_i = \tilde x_i \, e^{s_i(\tilde x_{\mathrm{pa}(i)})} + b_i(\tilde x_{\mathrm{pa}(i)}),
#   \qquad u \sim N(0, I).$$
#
# Read right to left, that *is* an SCM: $\tilde x_i = (u_i - b_i)\,e^{-s_i}$, a structural equation
# with additive-and-scaled noise whose inputs are exactly node $i$'s parents. So the flow's map
# $T: \tilde x \mapsto u$ is abduction, its inverse is generation, and chapter 1's
# abduction–action–prediction recipe gives counterfactuals. It is trained by maximum
# likelihood, $\log p(\tilde x) = \sum_i \log N(u_i; 0, 1) + s_i$, which needs one conditioner pass.
#
# We build it on stock `zuko` (`MAF(D, transforms=1, adjacency=A + I)`) and add what the recourse
# chapters need: counterfactuals that are differentiable with respect to the intervention values, the
# latent-shift form CARMA optimises, and a fast inference path.

# %%
#| export
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import zuko
from torch import nn

from carma_nb.core import (TRAINER_VERSION, Profile, as_features, check_seed, check_whole,
                           check_widths, get_profile, one_thread, progress)
from carma_nb.data import Pool, Pools, StandardScaler, make_pools, resolve_pool, split_id
from carma_nb.classifier import Fit, check_fit, load_model, save_model, trained_model
from carma_nb.scm import SCM, SCM_NAMES, _check_mask_values, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table

# %% [markdown]
# ## Building the flow
#
# Hidden sizes per SCM are the ones the paper chose by validation log-likelihood. The adjacency given
# to zuko must include the diagonal ($A + I$): zuko removes it again internally, so node $i$'s
# parameters depend on its parents only.

# %%
#| export
FLOW_HIDDEN: dict[str, tuple[int, ...]] = {
    'triangle-lin': (32,), 'collider-lin': (32,), 'chain-lin': (64,),
    'triangle-nlin': (32, 32, 32), 'collider-nlin': (16, 16, 16), 'chain-nlin': (32, 32, 32), 'loan': (64,),
}
_SLOPE = 1e-3   # zuko's MonotonicAffineTransform minimum slope: log-scales are soft-clipped to ±|log 1e-3|

def flow_hidden(scm: str | SCM) -> tuple[int, ...]:
    "Hidden widths of the flow's conditioner for `scm` (new SCMs default to (64,))."
    return FLOW_HIDDEN.get(get_scm(scm).name, (64,))

def build_maf(adjacency: torch.Tensor, # (D, D), A[i, j] = 1 iff x_j -> x_i
              hidden: tuple[int, ...]) -> zuko.flows.MAF:
    "Stock zuko MAF with one affine transform whose conditioner is masked by the causal graph."
    D = adjacency.shape[0]
    return zuko.flows.MAF(D, 0, transforms=1, hidden_features=list(hidden), activation=nn.ELU,
                          adjacency=adjacency.bool() | torch.eye(D, dtype=torch.bool))


# %% [markdown]
# ## The model
#
# `CausalFlow` wraps the zuko MAF with the scaler (as buffers) and exposes everything in raw units.
# The heart is `conditioner(z) → (b, s)`: zuko's masked MLP followed by the same soft clip of the
# log-scale that zuko's `MonotonicAffineTransform` applies.
#
# **The fast path.** zuko's `MaskedLinear` multiplies weight and mask on every call, and its
# transforms are rebuilt as Python objects per call. We run the same masked MLP as a plain chain of
# `F.linear` and an in-place `F.elu_` (half the time of the allocating ELU on this CPU, same
# gradients). While training, the masked weights $W \odot M$ are formed from the live parameters; a
# frozen flow (`freeze()`) precomputes them once. The masked weights are constants, so gradients still
# flow to the *inputs* (which is what CARMA needs), and the results are identical to zuko's (tested
# below). Large batches are
# processed in blocks of 16 384 rows so each block's hidden activations stay in cache
# (`benchmarks/bench_flow.py` measures both paths).

# %%
#| export
class CausalFlow(nn.Module):
    "Causal normalizing flow of one SCM's graph on raw features (standardisation built in)."
    def __init__(self,
                 scm: str, # name of the SCM whose graph masks the conditioner
                 hidden: tuple[int, ...], # conditioner hidden widths
                 scaler: StandardScaler, # fitted on the causal-model training split
                ):
        super().__init__()
        s = get_scm(scm)
        self.scm, self.hidden, self.depth = s.name, tuple(hidden), s.depth
        self.names = self.feature_names = s.names
        self.register_buffer('adjacency', s.adjacency.clone())
        anc = torch.zeros(s.n_features, s.n_features)          # anc[i, j] = 1 iff x_j is an ancestor of x_i
        for j in range(s.n_features): anc[s.descendants(j), j] = 1.
        self.register_buffer('ancestors', anc)
        height = [0] * s.n_features                              # longest directed path starting at each node
        for j in reversed(range(s.n_features)):
            height[j] = max((1 + height[c] for c in s.children(j)), default=0)
        self.register_buffer('height', torch.tensor(height))
        self.maf = build_maf(s.adjacency, hidden)
        self.register_buffer('mean', scaler.mean.clone().float())
        self.register_buffer('std', scaler.std.clone().float())
        self._prepared = {}   # dtype -> [(masked weight, bias), ...]; filled by freeze()

    latent_size = 1   # one exogenous latent per node (CARMA's interface; VACA has 4)

    @property
    def n_features(self) -> int: return self.mean.shape[0]
    @property
    def hyper(self) -> nn.Module: return self.maf.transform.transforms[0].hyper

    def __repr__(self):
        return (f"CausalFlow({self.scm!r}, hidden={list(self.hidden)}, D={self.n_features}, "
                f"depth={self.depth})")

    # ---- units -------------------------------------------------------------------------------
    def standardise(self, x): return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
    def unstandardise(self, z): return z * self.std.to(z.dtype) + self.mean.to(z.dtype)
    def _x(self, x, name='x'): return as_features(x, self.n_features, name, self.feature_names)

    # ---- the conditioner -------------------------------------------------------------------
    def freeze(self) -> 'CausalFlow':
        "Evaluation mode, no parameter gradients, masked weights precomputed (the fast path)."
        self.eval()
        for p in self.parameters(): p.requires_grad_(False)
        self._prepared = {}
        return self

    def _layers(self, dtype):
        "Masked (weight, bias) of each conditioner layer: live while training, precomputed once frozen."
        lins = [m for m in self.hyper if isinstance(m, nn.Linear)]
        if self.training or lins[0].weight.requires_grad:
            return [(m.mask * m.weight, m.bias) for m in lins]
        if dtype not in self._prepared:
            # normal tensors (not inference tensors): usable later under autograd too (CARMA's training)
            with torch.inference_mode(False), torch.no_grad():
                self._prepared[dtype] = [((m.mask * m.weight).to(dtype), m.bias.to(dtype)) for m in lins]
        return self._prepared[dtype]

    def conditioner(self, z: torch.Tensor # (n, D) standardised features
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        "Shift b and log-scale s of every node, functions of its parents only: two (n, D) tensors."
        layers = self._layers(z.dtype)
        phi = z
        for k, (w, b) in enumerate(layers):
            phi = F.linear(phi, w, b)
            if k < len(layers) - 1: phi = F.elu_(phi)   # in place: faster, same gradients
        phi = phi.unflatten(-1, (self.n_features, 2))
        a = phi[..., 1]
        return phi[..., 0], a / (1 + (a / math.log(_SLOPE)).abs())


# %% [markdown]
# ### Density, abduction and generation
#
# - `log_prob_std(z)`: the training objective, on standardised features.
# - `log_prob(x)`: the density of raw features, $\log p(x) = \log p(\tilde x) - \sum_j \log \sigma_j$.
# - `abduct(x)`: $u = T(\tilde x)$, one conditioner pass.
# - `decode(u)`: $\tilde x = T^{-1}(u)$ by sweeps. A node is exact once its parents are, so after
#   $k+1$ sweeps every node at depth $k$ is exact: depth + 1 sweeps invert the flow (zuko uses the same
#   number of passes).

# %%
#| export
def _forward_u(self: CausalFlow, z):
    b, s = self.conditioner(z)
    return z * torch.exp(s) + b, s

def _log_prob_std(self: CausalFlow, z: torch.Tensor) -> torch.Tensor:
    "log p(z̃) of standardised features (n, D) → (n,)."
    u, s = _forward_u(self, z)
    return (-0.5 * u**2 - 0.5 * math.log(2 * math.pi) + s).sum(-1)

def _log_prob(self: CausalFlow, x: torch.Tensor) -> torch.Tensor:
    "log-density of raw features x (n, D) → (n,)."
    x = self._x(x)
    return self.log_prob_std(self.standardise(x)) - torch.log(self.std.to(x.dtype)).sum()

def _abduct(self: CausalFlow, x: torch.Tensor) -> torch.Tensor:
    "Exogenous latents u = T(x̃) of raw features x (n, D)."
    return _forward_u(self, self.standardise(self._x(x)))[0]

def _sweep(self: CausalFlow, u, z, mask=None, zv=None, sweeps=None):
    "Fixed-point sweeps z ← (u − b(z))·e^{−s(z)}, with intervened entries held at zv."
    for _ in range(self.depth + 1 if sweeps is None else sweeps):
        b, s = self.conditioner(z)
        z = (u - b) * torch.exp(-s)
        if mask is not None: z = torch.where(mask, zv, z)
    return z

def _decode(self: CausalFlow, u: torch.Tensor, standardised: bool = False) -> torch.Tensor:
    "Features from latents u (n, D): the inverse flow (raw units unless `standardised`)."
    u = as_features(u, self.n_features, 'u')
    z = _sweep(self, u, torch.zeros_like(u))
    return z if standardised else self.unstandardise(z)

CausalFlow.log_prob_std, CausalFlow.log_prob = _log_prob_std, _log_prob
CausalFlow.abduct, CausalFlow.decode = _abduct, _decode

# %% [markdown]
# ### Counterfactuals, two ways
#
# **Hard interventions** (how the oracle and the evaluation replay a recommendation), as in chapter 1:
# abduct $u = T(\tilde x^F)$, set the intervened entries, and sweep with them held fixed. A node $k$
# edges below the nearest intervened node is exact after $k$ sweeps, so the graph's depth is enough —
# and in fact the longest path *starting at an intervened node* is: for loan's actionable features that
# is 2 sweeps (education → income → savings) instead of the depth 3, one conditioner pass saved.
# Everything is `torch.where`, never in-place, so gradients reach the intervention values. As in the
# SCM chapter, features with no intervened ancestor keep their factual value exactly (one matrix
# product with the graph's ancestor matrix decides which), rather than a re-computed copy that may
# differ in the last bit.
#
# **Latent shifts** (what CARMA's action network outputs, chapter 7): instead of setting values, shift the
# intervened nodes' exogenous latents, $\tilde x^{CF} = T^{-1}(u + M \odot \delta)$. The intervened
# features then move, and their descendants follow through the flow.

# %%
#| export
ROW_CHUNK = 16_384   # rows per block: a block's hidden activations stay in cache (measured: ~1.5x faster)

def _by_rows(fn, *tensors, chunk: int = ROW_CHUNK):
    "Apply `fn` to row blocks of same-length tensors and concatenate: the same result, cache-friendly."
    if len(tensors[0]) <= chunk: return fn(*tensors)
    return torch.cat([fn(*parts) for parts in zip(*(t.split(chunk) for t in tensors))])

def _counterfactual(self: CausalFlow,
                    x: torch.Tensor, # (n, D) factual raw features
                    mask: torch.Tensor, # bool (m, D) or (D,): intervened features
                    values: torch.Tensor, # (m, D) or (D,): target raw values (ignored where mask is False)
                   ) -> torch.Tensor:
    "Counterfactual raw features under do(x_j = values_j for mask_j), differentiable in `values`."
    x = self._x(x)
    mask, values, shape = _check_mask_values(self, x, mask, values)
    u = _by_rows(lambda xb: _forward_u(self, self.standardise(xb))[0], x)     # abduct each person once
    def hard_set(u, xf, mask, values):
        zv = self.standardise(values)
        used = mask.any(0)
        sweeps = int(self.height[used].max()) if used.any() else 0   # longest path below an intervened node
        z = _sweep(self, u, torch.where(mask, zv, self.standardise(xf)), mask, zv, sweeps=sweeps)
        moved = mask | (mask.to(self.ancestors.dtype) @ self.ancestors.T > 0)   # intervened or below one
        return torch.where(mask, values, torch.where(moved, self.unstandardise(z), xf))
    return _by_rows(hard_set, u.expand(shape), x.expand(shape), mask, values)

def _latent_counterfactual(self: CausalFlow,
                           u: torch.Tensor, # (n, D) factual latents, u = flow.abduct(x)
                           mask: torch.Tensor, # (n, D) bool or 0/1 float: which latents to shift
                           delta: torch.Tensor, # (n, D) latent shifts
                           standardised: bool = False, # return x̃ instead of raw units
                          ) -> torch.Tensor:
    "CARMA's counterfactual: T⁻¹(u + mask ⊙ delta), in raw units unless `standardised`."
    u = as_features(u, self.n_features, 'u')
    m = mask.to(u.dtype) if isinstance(mask, torch.Tensor) else torch.as_tensor(mask, dtype=u.dtype)
    u_cf = u + m * delta
    z = _sweep(self, u_cf, torch.zeros_like(u_cf))
    return z if standardised else self.unstandardise(z)

CausalFlow.counterfactual, CausalFlow.latent_counterfactual = _counterfactual, _latent_counterfactual


# %% [markdown]
# ### Sampling, observational and interventional
#
# Draw $u \sim N(0, I)$ and decode. Under an intervention, decode with the intervened entries held at
# their values: the flow's version of sampling from the mutilated SCM.

# %%
#| export
def _sample(self: CausalFlow, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    "n observational samples in raw units."
    u = torch.randn(n, self.n_features, generator=generator, dtype=self.mean.dtype)
    return self.decode(u)

def _interventional_sample(self: CausalFlow,
                           n: int, # number of samples
                           mask: torch.Tensor, # bool (D,) or (n, D): intervened features
                           values: torch.Tensor, # (D,) or (n, D): their raw values
                           generator: torch.Generator | None = None) -> torch.Tensor:
    "n samples in raw units from the flow under do(x_j = values_j for mask_j)."
    u = torch.randn(n, self.n_features, generator=generator, dtype=self.mean.dtype)
    mask, values, shape = _check_mask_values(self, u, mask, values)
    zv = self.standardise(values)
    return self.unstandardise(_sweep(self, u, torch.where(mask, zv, torch.zeros_like(u)), mask, zv))

CausalFlow.sample, CausalFlow.interventional_sample = _sample, _interventional_sample


# %% [markdown]
# ## Saving, loading and training
#
# A flow checkpoint holds the zuko weights, the config that rebuilds it, the scaler and its training
# curves. `load_flow(path, scm=...)` refuses a flow of another SCM.

# %%
#| export
def save_flow(flow: CausalFlow, path) -> Path:
    "Save a flow (weights, architecture, scaler) to `path`."
    return save_model(flow, path, 'flow')

def load_flow(path, scm: str | None = None) -> CausalFlow:
    "Load a frozen flow; with `scm`, refuse a checkpoint of another SCM."
    return load_model(CausalFlow, path, 'flow', scm)


# %% [markdown]
# Training is maximum likelihood on the causal-model pool (standardised), with the paper's settings:
# Adam $10^{-3}$, batch 4 000, 1 000 epochs, and `ReduceLROnPlateau` on the validation loss (factor
# 0.95, patience 30 epochs). The final epoch's weights are kept. Both losses are recorded per epoch.
# Like the classifier's, the cache key is the whole configuration, the patience included.
#
# Two details keep a 1 000-epoch loan fit within seconds on a 2-core CPU (measured in
# `benchmarks/bench_flow.py`): the training set is shuffled once per epoch and cut into contiguous
# batches (instead of gathering every batch by index), and Adam runs its fused kernel.

# %%
#| export
@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_flow(scm: SCM, pool: Pool, cfg: dict, verbose: bool):
    "Maximum likelihood on `pool.train` with the settings of `cfg`; both losses after every epoch."
    torch.manual_seed(cfg['seed'])
    scaler = StandardScaler().fit(pool.train.x)
    flow = CausalFlow(scm.name, cfg['hidden'], scaler).train()
    opt = torch.optim.Adam(flow.maf.parameters(), lr=cfg['lr'], fused=True)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.95, patience=cfg['patience'])
    ztr, zva = scaler.transform(pool.train.x), scaler.transform(pool.val.x)
    g = torch.Generator().manual_seed(cfg['seed'])
    tr_curve, va_curve = [], []
    for _ in progress(range(cfg['epochs']), desc=f'flow {scm.name}', disable=None if verbose else True):
        tot, zp = 0., ztr[torch.randperm(len(ztr), generator=g)]   # one shuffle per epoch, contiguous batches
        for zb in zp.split(cfg['batch']):
            loss = -flow.log_prob_std(zb).mean()
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            tot += float(loss.detach()) * len(zb)
        with torch.no_grad(): val = float(-flow.log_prob_std(zva).mean())
        sched.step(val)
        tr_curve.append(tot / len(ztr)); va_curve.append(val)
    extras = {'history_train_nll': torch.tensor(tr_curve), 'history_val_nll': torch.tensor(va_curve)}
    return flow.state_dict(), scaler.state_dict(), extras

@dataclass(frozen=True)
class FlowFit(Fit):
    "How the causal flow is fitted (epochs, batch, lr of `Fit`) and its conditioner's widths."
    batch: int = 4000
    hidden: tuple[int, ...] | None = None   # conditioner widths; None: the paper's for the SCM
    patience: int = 30                      # epochs without a better validation loss before the lr drops
    def __post_init__(self):
        super().__post_init__()
        if self.hidden is not None: object.__setattr__(self, 'hidden', check_widths(self.hidden, 'hidden'))
        object.__setattr__(self, 'patience', check_whole(self.patience, 'patience', 0))

def fit_flow(scm: str | SCM, # the SCM whose graph the flow uses
             pool: Pool | Pools | None = None, # causal-model pool (default: make_pools(scm).causal)
             profile: str | Profile | None = None, # epochs come from the profile (paper: 1000)
             seed: int = 0, # initialisation and batch order
             fit: FlowFit | None = None, # widths, epochs, batch, lr, patience (default: the paper's)
             cache: bool = True, # reuse / store in the model cache
             verbose: bool = True,
            ) -> CausalFlow:
    "Fit (or fetch from the cache) the causal normalizing flow of `scm` by maximum likelihood."
    scm = get_scm(scm)
    pool = resolve_pool(scm, pool, 'causal')
    fit, seed = check_fit(fit, FlowFit), check_seed(seed)
    cfg = {'kind': 'flow', 'trainer': TRAINER_VERSION, 'scm': scm.name,
           **fit.config(get_profile(profile).flow_epochs), 'hidden': list(fit.hidden or flow_hidden(scm)),
           'seed': seed, 'train': split_id(pool.train), 'val': split_id(pool.val)}
    return trained_model(CausalFlow, 'flow', cfg, lambda: _fit_flow(scm, pool, cfg, verbose), cache)


# %%
profile = get_profile()
t0 = time.perf_counter()
flow = fit_flow('loan', profile=profile, cache=False, verbose=False)
fit_seconds = time.perf_counter() - t0
print(f'{flow}: {profile.flow_epochs} epochs in {fit_seconds:.1f} s on this machine '
      f'(profile {profile.name}, not cached)')

# %% [markdown]
# ## Checking the flow
#
# **It is zuko's flow.** Our log-density (fast path, and the training path) equals zuko's own
# `log_prob` on the same weights, and our inverse equals zuko's inverse transform.

# %%
pools = make_pools('loan')
z = flow.standardise(pools.causal.test.x[:500])
with torch.no_grad():
    zuko_lp = flow.maf().log_prob(z)
    test_close(flow.log_prob_std(z), zuko_lp, eps=1e-4)
    u = flow.abduct(pools.causal.test.x[:500])
    test_close(flow.decode(u, standardised=True), flow.maf().transform.inv(u), eps=1e-4)
    test_close(flow.decode(u), pools.causal.test.x[:500], eps=1e-3)   # the inverse inverts

# %% [markdown]
# **Its Jacobian has the graph's sparsity.** $\partial u / \partial \tilde x$ is lower triangular with
# non-zeros only where $A + I$ has them: $u_i$ depends on $\tilde x_i$ and its parents, nothing else.
# That is what makes the flow a causal model of *this* graph rather than of an arbitrary ordering.

# %%
J = torch.autograd.functional.jacobian(lambda z: flow.abduct(flow.unstandardise(z)).squeeze(0), z[:1])
J = J.squeeze(1)
allowed = (flow.adjacency + torch.eye(7)).bool()
test_eq((J.abs() > 0) & ~allowed, torch.zeros(7, 7, dtype=torch.bool))
fig, ax = plt.subplots(figsize=(4.2, 3.6))
im = ax.imshow(J.abs().log10().clamp(min=-4).numpy(), cmap='viridis')
ax.set_xticks(range(7), flow.feature_names, rotation=60, fontsize=8)
ax.set_yticks(range(7), flow.feature_names, fontsize=8)
ax.set_xlabel('x̃ (input)'); ax.set_ylabel('u (output)')
ax.set_title('log10 |∂u/∂x̃| of the loan flow', fontsize=10)
fig.colorbar(im, ax=ax, shrink=0.8)
save_figure(fig, 'flow_jacobian_loan')
plt.show()

# %% [markdown]
# **Interventions hold and gradients flow.** Intervened features take exactly their values, an empty
# mask returns the factual (up to float rounding of abduction and generation), and the derivative of
# a counterfactual with respect to an intervention value matches finite differences.

# %%
x = pools.causal.test.x[:4]
mask = torch.zeros(4, 7, dtype=torch.bool); mask[:, 5] = True               # do(income = ...)
values = x.clone(); values[:, 5] += 2.
cf = flow.counterfactual(x, mask, values)
test_eq(cf[:, 5], values[:, 5])
test_eq(cf[:, :5], x[:, :5])                           # non-descendants of income never move
test_close(flow.counterfactual(x, torch.zeros(7, dtype=torch.bool), x), x, eps=1e-3)
v = values.double().requires_grad_(True)
f64 = load_flow(save_flow(flow, Path(tempfile.mkdtemp())/'f.pt')).double()
f64.counterfactual(x.double(), mask, v)[:, 6].sum().backward()
h = 1e-4; vp = values.double().clone(); vp[:, 5] += h; vm = values.double().clone(); vm[:, 5] -= h
fd = (f64.counterfactual(x.double(), mask, vp)[:, 6] - f64.counterfactual(x.double(), mask, vm)[:, 6]) / (2*h)
test_close(v.grad[:, 5], fd, eps=1e-5)
pd.DataFrame({'∂ savings / ∂ income (autograd)': v.grad[:, 5].numpy(),
              'finite difference': fd.detach().numpy(),
              'true SCM': [1.5 if i > 0 else 0. for i in values[:, 5].tolist()]})

# %% [markdown]
# The flow learned that savings grow by about 1.5 per unit of income when income is positive, and
# barely at all otherwise: the kink of $S = -4 + 1.5\cdot\mathbb 1[I>0]\cdot I + u_S$, recovered from
# data and the graph alone. **Bad input is refused**, as everywhere in the package:

# %%
test_fail(lambda: flow.counterfactual(x[:, :6], mask, values), contains='6 columns but 7 features')
test_fail(lambda: flow.log_prob(torch.full((1, 7), float('nan'))), contains='NaN or inf')
test_fail(lambda: flow.counterfactual(x, mask.float(), values), contains='mask must be a boolean')
test_eq(flow.config['patience'], 30)                          # part of the cache key, like every setting
with tempfile.TemporaryDirectory() as d:
    p = save_flow(flow, Path(d)/'flow.pt')
    test_eq(load_flow(p, scm='loan').counterfactual(x, mask, values), cf)
    test_fail(lambda: load_flow(p, scm='triangle-lin'),
              contains="has scm='loan' but scm='triangle-lin' was requested")

# %% [markdown]
# ## Evaluation against the true SCM
#
# How good a stand-in is the flow? Four measures on the causal-model **test** split, in raw units, as
# the paper evaluates its causal models (its appendix):
#
# - **log-likelihood** of the test data under the flow (higher is better);
# - **observational MMD** between flow samples and test data;
# - **interventional MMD** between flow and true-SCM samples under do(x_i = v);
# - **counterfactual error**: for every test person, the Euclidean distance between the flow's and the
#   true SCM's counterfactual under do(x_i = v), averaged over people and interventions.
#
# The interventions set each SCM's intervention nodes (4-node triangle and chain: $x_s$ and $x_1$;
# collider: $x_1$; loan: gender and age) to the 25th, 50th and 75th percentile of its training values.
# MMD uses a Gaussian kernel on features scaled by the training standard deviation, bandwidth by the
# median heuristic; next to it we report the same statistic between two independent samples of the
# **true** SCM, the floor any model can reach with that many samples. The counterfactual error is also
# given in units of each feature's training standard deviation, for comparison with work that reports
# it on standardised data; the raw-unit value is the one our targets use. The functions take any causal
# model with `log_prob`, `sample`, `interventional_sample` and `counterfactual`, so chapter 11 evaluates
# VACA with them too.

# %%
#| export
INTERVENTION_NODES: dict[str, tuple[str, ...]] = {
    'triangle-lin': ('x_s', 'x1'), 'triangle-nlin': ('x_s', 'x1'),
    'chain-lin': ('x_s', 'x1'), 'chain-nlin': ('x_s', 'x1'),
    'collider-lin': ('x1',), 'collider-nlin': ('x1',), 'loan': ('gender', 'age'),
}
#: Values reached by the paper's flows (its appendix): references shown next to ours, never results.
PAPER_FLOW_CF_ERROR = {'triangle-lin': 0.036, 'triangle-nlin': 0.032, 'chain-lin': 0.022, 'chain-nlin': 0.145,
                       'collider-lin': 0.012, 'collider-nlin': 0.032, 'loan': 0.196}
PAPER_FLOW_LOGLIK = {'triangle-lin': -5.71, 'loan': -13.61}

def interventions(scm: str | SCM, # the SCM (or its name)
                  x_train: torch.Tensor, # (n, D) training features whose quantiles give the values
                  quantiles=(0.25, 0.5, 0.75),
                 ) -> list[tuple[str, float, float]]:
    "(feature, quantile, value) for each intervention node of `scm` at the training-data quantiles."
    scm = get_scm(scm)
    roots = tuple(scm.names[i] for i in range(scm.n_features) if not scm.parents(i))
    names = INTERVENTION_NODES.get(scm.name) or roots
    x_train = as_features(x_train, scm.n_features, 'x_train', scm.names)
    return [(n, q, float(torch.quantile(x_train[:, scm.index(n)].double(), q)))
            for n in names for q in quantiles]

def mmd(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    "Biased MMD² of samples a, b (features divided by `scale`); Gaussian kernel, median-heuristic bandwidth."
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or tuple(scale.shape) != (a.shape[1],):
        raise ValueError(f"mmd needs two samples (n, D) and (m, D) and a scale (D,), "
                         f"got {tuple(a.shape)}, {tuple(b.shape)} and {tuple(scale.shape)}")
    a, b = (a / scale).double(), (b / scale).double()
    ab = torch.cat([a, b])
    d2 = torch.cdist(ab, ab).pow(2)
    bw = d2[d2 > 0].median()
    k = torch.exp(-d2 / bw)
    n = len(a)
    return float(k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean())

def _do(D: int, j: int, v: float, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros(n, D, dtype=torch.bool); mask[:, j] = True
    return mask, torch.full((n, D), v)

def evaluate_causal_model(model, # any causal model: log_prob, sample, interventional_sample, counterfactual
                          scm: str | SCM, pools: Pools | None = None,
                          n_mmd: int = 1000, # samples per MMD estimate
                          seed: int = 0) -> dict:
    "Log-likelihood, observational/interventional MMD and counterfactual error against the true SCM."
    scm = get_scm(scm); pools = make_pools(scm) if pools is None else pools
    needs = ('log_prob', 'sample', 'interventional_sample', 'counterfactual')
    lacks = [m for m in needs if not hasattr(model, m)]
    if lacks: raise TypeError(f"model must be a causal model; {type(model).__name__} lacks {lacks}")
    if not isinstance(pools, Pools) or pools.scm != scm.name:
        raise ValueError(f"pools must be the Pools of {scm.name} (make_pools({scm.name!r}))")
    n_mmd, seed = check_whole(n_mmd, 'n_mmd', 2), check_seed(seed)
    test, train = pools.causal.test, pools.causal.train
    scale = train.x.std(0)
    g = torch.Generator().manual_seed(seed)
    rng = lambda k: np.random.default_rng([seed, k])
    with torch.inference_mode():
        out = {'log-lik': float(model.log_prob(test.x).mean())}
        x_true = scm.generate(scm.sample_noise(n_mmd, rng(1)))
        out['obs MMD'] = mmd(model.sample(n_mmd, g), test.x[:n_mmd], scale)
        out['obs MMD floor'] = mmd(x_true, test.x[:n_mmd], scale)
        imm, imm_floor, cf_err, cf_err_std = [], [], [], []
        for k, (name, q, v) in enumerate(interventions(scm, train.x)):
            j = scm.index(name)
            m1, v1 = _do(scm.n_features, j, v)
            x_a = scm.generate(scm.sample_noise(n_mmd, rng(10 + k)))
            x_b = scm.generate(scm.sample_noise(n_mmd, rng(100 + k)))
            true_int = scm.counterfactual(x_a, m1, v1)                  # a sample of the true do-distribution
            imm.append(mmd(model.interventional_sample(n_mmd, m1[0], v1[0], g), true_int, scale))
            imm_floor.append(mmd(scm.counterfactual(x_b, m1, v1), true_int, scale))
            mt, vt = _do(scm.n_features, j, v, len(test))
            diff = model.counterfactual(test.x, mt, vt) - scm.counterfactual(test.x, mt, vt)
            cf_err.append(float(diff.norm(dim=1).mean()))
            cf_err_std.append(float((diff / scale).norm(dim=1).mean()))
        out.update({'int MMD': float(np.mean(imm)), 'int MMD floor': float(np.mean(imm_floor)),
                    'cf error': float(np.mean(cf_err)), 'cf error (std units)': float(np.mean(cf_err_std))})
    return out


# %% [markdown]
# `mmd` is near zero for two samples of one distribution and clearly positive when one is shifted:

# %%
_g = torch.Generator().manual_seed(0)
_a, _b = torch.randn(500, 3, generator=_g), torch.randn(500, 3, generator=_g)
assert mmd(_a, _b, torch.ones(3)) < 0.01 < mmd(_a, _b + 1, torch.ones(3))
test_fail(lambda: mmd(_a, _b[:, :2], torch.ones(3)), contains='mmd needs two samples (n, D) and (m, D)')
round(mmd(_a, _b, torch.ones(3)), 4), round(mmd(_a, _b + 1, torch.ones(3)), 4)

# %%
ev = evaluate_causal_model(flow, 'loan', pools)
test_fail(lambda: evaluate_causal_model(flow, 'chain-lin', pools), contains='must be the Pools of chain-lin')
test_fail(lambda: evaluate_causal_model(object(), 'loan', pools), contains="object lacks ['log_prob'")
{k: round(v, 4) for k, v in ev.items()}


# %% [markdown]
# ### All seven SCMs
#
# Each flow is fitted with the active profile's epochs (cached: a rerun reuses them), evaluated, and
# shown next to the paper's values. At the paper's settings we ask for a counterfactual error within
# 1.1× of the paper's and a loan test log-likelihood of at least −13.65 (the paper's flow: −13.61).

# %%
#| export
def flow_table(profile: str | Profile | None = None, seed: int = 0, verbose: bool = False) -> pd.DataFrame:
    "Fit (or load) and evaluate the flow of every SCM; the paper's values alongside."
    rows = []
    for name in SCM_NAMES:
        pools = make_pools(name, seed)
        flow = fit_flow(name, pools.causal, profile, verbose=verbose)
        ev = evaluate_causal_model(flow, name, pools)
        rows.append({'scm': name, 'hidden': 'x'.join(map(str, flow.hidden)), **ev,
                     'paper cf error (reference)': PAPER_FLOW_CF_ERROR[name],
                     'paper log-lik (reference)': PAPER_FLOW_LOGLIK.get(name, np.nan)})
    df = pd.DataFrame(rows).set_index('scm')
    df['cf error / paper'] = df['cf error'] / df['paper cf error (reference)']
    return df


# %%
table = flow_table(profile)
save_table(table.round(4), 'flow_quality')
print(f'profile: {profile.name} ({profile.flow_epochs} epochs)')
table.round(4)

# %% [markdown]
# What the table says, at the paper's settings (`figures/flow_quality.md`):
#
# - **Loan**, the SCM the later chapters lean on most: a test log-likelihood of −13.53 (the paper's
#   flow: −13.61) and a counterfactual error of 0.17, below the paper's 0.196. Its MMDs sit close to
#   their sampling floors (observational 1.5×, interventional 2.2×).
# - **Five of the seven SCMs** are within 1.1× of the paper's counterfactual error (chain-lin only
#   just). collider-lin (0.023 against 0.012) and triangle-nlin (0.046 against 0.032) are not; the study
#   [`studies/flow_counterfactual_error.ipynb`](../studies/flow_counterfactual_error.ipynb) finds that a
#   larger training split closes the gap while no setting of the model does, and that the draw of the
#   data moves the error by a factor of up to 3.
# - The observational MMDs of the 4-node SCMs stay above their floors: $u_1$ is a two-component
#   mixture, which a single affine layer with a Gaussian base cannot represent exactly. This is a
#   property of the model the paper specifies, and it barely affects counterfactuals, which use the
#   person's own abducted noise rather than samples of it.
#
# The quick profile trains each flow for 120 epochs instead of 1 000; its flows are less finished, and
# the checks below scale with that (errors within 5× of the paper's instead of 1.1×).

# %%
ratio = table['cf error / paper']
four_node = table.index != 'loan'
assert (table['obs MMD'] < 0.01).all(), table['obs MMD']
assert (table.loc[four_node, 'obs MMD'] > 3 * table.loc[four_node, 'obs MMD floor']).all()   # the mixture u_1
assert table.loc['loan', 'obs MMD'] < 2 * table.loc['loan', 'obs MMD floor']
assert table.loc['loan', 'log-lik'] >= -13.65, table.loc['loan']
if profile.name == 'paper':
    within = {'triangle-lin', 'collider-nlin', 'chain-lin', 'chain-nlin', 'loan'}
    test_eq(set(ratio.index[ratio <= 1.1]), within)
    assert table.loc['loan', 'int MMD'] < 3 * table.loc['loan', 'int MMD floor']
else:
    assert (ratio <= 5).all(), ratio
ratio.round(2)

# %% [markdown]
# ### Flow vs true counterfactuals on loan
#
# Each panel takes every loan test person, intervenes on age (set to its median) and plots the flow's
# counterfactual value of each downstream feature against the true SCM's. Points on the diagonal are
# exact counterfactuals.

# %%
test = pools.causal.test
(_, _, v_age) = [t for t in interventions('loan', pools.causal.train.x) if t[0] == 'age' and t[1] == 0.5][0]
mt, vt = _do(7, 1, v_age, len(test))
with torch.no_grad():
    cf_flow, cf_true = flow.counterfactual(test.x, mt, vt), get_scm('loan').counterfactual(test.x, mt, vt)
fig, axes = plt.subplots(1, 5, figsize=(16, 3.3))
for ax, j in zip(axes, [2, 3, 4, 5, 6]):
    ax.scatter(cf_true[:, j], cf_flow[:, j], s=2, alpha=.3)
    lo, hi = float(cf_true[:, j].min()), float(cf_true[:, j].max())
    ax.plot([lo, hi], [lo, hi], 'k--', lw=.8)
    ax.set_title(flow.feature_names[j], fontsize=10); ax.set_xlabel('true counterfactual')
axes[0].set_ylabel('flow counterfactual')
fig.suptitle(f'loan, do(age = {v_age:.1f}): flow vs true counterfactuals of the descendants of age', y=1.04)
save_figure(fig, 'flow_vs_true_cf_loan')
plt.show()

# %% [markdown]
# Training curves of the loan flow: train and validation negative log-likelihood (standardised units)
# per epoch.

# %%
loan_flow = fit_flow('loan', profile=profile, verbose=False)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(loan_flow.history['train_nll'], label='train')
ax.plot(loan_flow.history['val_nll'], label='validation')
ax.set_xlabel('epoch'); ax.set_ylabel('NLL (standardised)'); ax.legend()
ax.set_ylim(None, float(loan_flow.history['val_nll'][5]))
save_figure(fig, 'flow_training_loan')
plt.show()

# %%
#| hide
import nbdev; nbdev.nbdev_export()

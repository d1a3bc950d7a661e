# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
# ---

# %%
#| default_exp vaca

# %% [markdown]
# # VACA: a second causal model
#
# > A variational graph autoencoder as CARMA's causal model: same interface, different trade-offs.
#
# CARMA needs *some* causal generative model that can abduct a person's latents and decode a shifted
# latent into a counterfactual. Chapter 4 used a causal normalizing flow. To show that CARMA works with
# any differentiable causal model, the paper also trains it with **VACA** (Sánchez-Martín, Rateike &
# Valera, AAAI 2022), a variational graph autoencoder whose message passing follows the causal graph,
# and compares the two on loan (paper Fig. 3). The VACA of the paper's experiments:
#
# - each person is a graph with one node per feature (its standardised value) and edges $A + I$;
# - the **encoder** embeds each node (1 → 16), passes one round of messages parent → child (a GIN
#   layer, $h_i' = \mathrm{MLP}(h_i + \sum_{j \in pa(i) \cup \{i\}} h_j)$) and outputs a 4-dimensional
#   Gaussian latent per node;
# - the **decoder** embeds each latent (4 → 16), passes as many rounds of messages as the graph's
#   undirected diameter — so information can reach every node it should — and reads each node's value
#   (16 → 1);
# - an **intervention** on node $i$ removes the edges *into* $i$ (its self-loop stays): the mutilated
#   graph of do-calculus, applied to the message passing.
#
# Unlike the flow, VACA's abduction is approximate (an encoder mean, not an exact inverse) and its
# latents are 4-dimensional per node. Nothing in CARMA needs to change: it only asks its causal model
# for `abduct`, `latent_counterfactual` and `latent_size`. This chapter implements VACA with dense
# batched tensors — a (batch, nodes, channels) tensor and the adjacency as a matrix, per-row adjacency
# when rows intervene on different nodes — so there is no graph library and no per-graph loop. Then it
# measures VACA against the flow and the true SCM (chapter 4's metrics), and CARMA with either model.
#
# The paper's finding (Fig. 3): with VACA, CARMA's loan cost roughly doubles and its time per person
# rises, while causal validity stays about 99 %. The flow is the better causal model — the paper expects
# as much of the state of the art — and what matters is that CARMA works with either.

# %%
#| export
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.core import (TRAINER_VERSION, as_features, check_seed,
                           check_widths, get_profile, one_thread, progress)
from carma_nb.data import Pool, Pools, StandardScaler, make_pools, resolve_pool, split_id
from carma_nb.classifier import Fit, check_fit, load_model, save_model, trained_model
from carma_nb.flow import PAPER_FLOW_CF_ERROR, evaluate_causal_model, fit_flow
from carma_nb.oracle import oracle_reference
from carma_nb.recourse import evaluate_recourse, time_per_person
from carma_nb.scm import SCM, SCM_NAMES, _check_mask_values, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
from pathlib import Path
import matplotlib.pyplot as plt
import seaborn as sns
from carma_nb.core import save_figure, save_table


# %% [markdown]
# ## Building blocks
#
# Two small layers do all the work. `NodeLinear` gives every node its own weights (the per-node MLPs
# that embed values and read them out), applied to all nodes at once with one `einsum`. `GINLayer`
# aggregates each node with its parents through the (possibly per-row) adjacency matrix — a batched
# matrix product — and applies an MLP shared by all nodes.

# %%
#| export
class NodeLinear(nn.Module):
    "A separate linear map per node: (n, D, i) → (n, D, o) with weights (D, i, o)."
    def __init__(self, n_nodes: int, d_in: int, d_out: int):
        super().__init__()
        bound = math.sqrt(6 / (d_in + d_out))
        self.weight = nn.Parameter(torch.empty(n_nodes, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_nodes, d_out))
    def forward(self, h): return torch.einsum('ndi,dio->ndo', h, self.weight) + self.bias

class GINLayer(nn.Module):
    "h_i' = MLP(h_i + Σ_{j ∈ pa(i) ∪ {i}} h_j): messages parent → child through `adj` (D, D) or (n, D, D)."
    def __init__(self, width: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(width, width))
    def forward(self, h, adj): return F.relu(self.mlp(h + adj @ h))

def undirected_diameter(adjacency: torch.Tensor) -> int:
    "Longest shortest path (in edges) of the graph with edge directions ignored."
    D = adjacency.shape[0]
    und = (adjacency + adjacency.T) > 0
    dist = torch.full((D, D), float('inf')); dist[und] = 1.; dist.fill_diagonal_(0.)
    for k in range(D): dist = torch.minimum(dist, dist[:, k:k + 1] + dist[k:k + 1, :])   # Floyd–Warshall
    return int(dist[torch.isfinite(dist)].max())


# %%
diameters = [undirected_diameter(get_scm(n).adjacency) 
             for n in ('triangle-lin', 'collider-lin', 'chain-lin', 'loan')]
test_eq(diameters, [2, 2, 2, 3])
h = torch.randn(5, 4, 16); adj = get_scm('chain-lin').adjacency + torch.eye(4)
test_eq(GINLayer(16)(h, adj).shape, (5, 4, 16))
test_eq(NodeLinear(4, 16, 3)(h).shape, (5, 4, 3))

# %% [markdown]
# ## The model
#
# `VACA(scm, hidden, scaler)` follows the same constructor as the flow (hidden = (embedding width,
# latent size per node)), so the shared save/load helpers of chapter 2 work unchanged. The
# likelihood is Gaussian with variance 0.05 per standardised feature — the squared error weighted by
# $1/0.1$ of the paper's VACA setup — so the ELBO is a proper lower bound on the log-likelihood, which is
# what `log_prob` reports (in raw units, like the flow's).

# %%
#| export
VACA_HIDDEN = (16, 4)   # node embedding width, latent size per node (the paper's VACA)
_VAR = 0.05             # decoder variance: squared error weighted 1/(2·0.05) = 1/0.1

class VACA(nn.Module):
    "Variational graph autoencoder on one SCM's causal graph (dense batched message passing), raw features."
    def __init__(self, scm: str, hidden: tuple[int, int] = VACA_HIDDEN, scaler: StandardScaler | None = None):
        super().__init__()
        s = get_scm(scm)
        if scaler is None: raise ValueError("VACA needs the scaler of its causal-model training split")
        width, dz = (int(v) for v in hidden)
        D = s.n_features
        self.scm, self.hidden, self.names, self.feature_names = s.name, (width, dz), s.names, s.names
        self.latent_size = dz
        self.register_buffer('adjacency', s.adjacency.clone().float())
        self.register_buffer('mean', scaler.mean.clone().float())
        self.register_buffer('std', scaler.std.clone().float())
        self.enc_in, self.enc_gin = NodeLinear(D, 1, width), GINLayer(width)
        self.enc_out = NodeLinear(D, width, 2 * dz)
        self.dec_in = NodeLinear(D, dz, width)
        self.dec_gin = nn.ModuleList([GINLayer(width) for _ in range(undirected_diameter(s.adjacency))])
        self.dec_out = NodeLinear(D, width, 1)

    @property
    def n_features(self): return self.mean.shape[0]
    def __repr__(self):
        width, dz = self.hidden
        return f"VACA({self.scm!r}, width {width}, latent {dz} per node, {len(self.dec_gin)} decoder layers)"
    def freeze(self) -> 'VACA':
        "Evaluation mode (no dropout) and no parameter gradients."
        self.eval()
        for p in self.parameters(): p.requires_grad_(False)
        return self

    def standardise(self, x): return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
    def unstandardise(self, z): return z * self.std.to(z.dtype) + self.mean.to(z.dtype)

    def graph(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        "A + I, without the edges into the nodes `mask` (D,) or (n, D) intervenes on: (D, D) or (n, D, D)."
        eye = torch.eye(self.n_features, dtype=self.adjacency.dtype)
        if mask is None: return self.adjacency + eye
        keep = 1 - mask.to(self.adjacency.dtype)
        return self.adjacency * keep.unsqueeze(-1) + eye

    def encode(self, xt: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        "Posterior mean and log-variance (n, D, d_z) of standardised rows xt (n, D) on graph `adj`."
        h = F.relu(self.enc_in(xt.unsqueeze(-1)))
        return self.enc_out(self.enc_gin(h, adj)).chunk(2, -1)

    def decode_std(self, z: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        "Standardised features (n, D) from latents z (n, D, d_z) on graph `adj`."
        h = F.relu(self.dec_in(z))
        for layer in self.dec_gin: h = layer(h, adj)
        return self.dec_out(h).squeeze(-1)

    def elbo_std(self, xt: torch.Tensor) -> torch.Tensor:
        "Per-row ELBO (n,) of standardised rows: a lower bound on log p(x̃)."
        mu, logvar = self.encode(xt, self.graph())
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        rec = self.decode_std(z, self.graph())
        loglik = (-(xt - rec) ** 2 / (2 * _VAR) - 0.5 * math.log(2 * math.pi * _VAR)).sum(-1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum((-1, -2))
        return loglik - kl


# %% [markdown]
# ### The operations every causal model offers
#
# The same methods as the flow: `log_prob` (here the ELBO bound), `sample`, `interventional_sample`,
# `counterfactual`, plus the two CARMA uses — `abduct` (the encoder mean, flattened to $D \cdot d_z$) and
# `latent_counterfactual` (shift the intervened nodes' latent blocks, decode on the mutilated graph).
# For a hard intervention the intervened node's latent is the encoding of its new value on the
# mutilated graph (where it has no parents), and its output is set to the value exactly.

# %%
#| export
def _vaca_log_prob(self: VACA, x):
    "ELBO lower bound on log p(x) in raw units, (n,)."
    x = as_features(x, self.n_features, 'x', self.names)
    return self.elbo_std(self.standardise(x)) - torch.log(self.std).sum()

def _vaca_abduct(self: VACA, x) -> torch.Tensor:
    "Latents (n, D·d_z): the encoder's posterior mean of each node on the causal graph."
    x = as_features(x, self.n_features, 'x', self.names)
    return self.encode(self.standardise(x), self.graph())[0].flatten(1)

def _vaca_latent_counterfactual(self: VACA, z: torch.Tensor, mask: torch.Tensor, delta: torch.Tensor,
                                standardised: bool = False) -> torch.Tensor:
    "CARMA's counterfactual: masked latent blocks shifted by δ (n, D·d_z), decoded on the mutilated graph."
    n, D, dz = z.shape[0], self.n_features, self.latent_size
    m = mask.to(z.dtype)
    zc = (z + delta * m.repeat_interleave(dz, -1)).unflatten(-1, (D, dz))
    xt = self.decode_std(zc, self.graph(m))
    return xt if standardised else self.unstandardise(xt)

def _vaca_counterfactual(self: VACA, x, mask, values) -> torch.Tensor:
    "Counterfactuals (n, D) under do(x_M = values_M), per-row masks and values, raw units."
    x = as_features(x, self.n_features, 'x', self.names)
    mask, values, shape = _check_mask_values(self, x, mask, values)
    x = x.expand(shape)
    xt, vt = self.standardise(x), self.standardise(values)
    adj_do = self.graph(mask)
    z_f = self.encode(xt, self.graph())[0]
    z_do = self.encode(torch.where(mask, vt, xt), adj_do)[0]
    z = torch.where(mask.unsqueeze(-1), z_do, z_f)
    return torch.where(mask, values, self.unstandardise(self.decode_std(z, adj_do)))

def _vaca_sample(self: VACA, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    "n observational samples (raw units): prior latents decoded on the causal graph."
    z = torch.randn(n, self.n_features, self.latent_size, generator=generator)
    return self.unstandardise(self.decode_std(z, self.graph()))

def _vaca_interventional_sample(self: VACA, n: int, mask, values,
                                generator: torch.Generator | None = None) -> torch.Tensor:
    "n samples (raw units) under do(x_M = values_M): prior latents, intervened ones encoded, mutilated graph."
    mask, values, _ = _check_mask_values(self, torch.zeros(n, self.n_features), mask, values)
    adj_do = self.graph(mask)
    z = torch.randn(n, self.n_features, self.latent_size, generator=generator)
    z_do = self.encode(self.standardise(values), adj_do)[0]
    z = torch.where(mask.unsqueeze(-1), z_do, z)
    return torch.where(mask, values, self.unstandardise(self.decode_std(z, adj_do)))

VACA.log_prob, VACA.abduct, VACA.counterfactual = _vaca_log_prob, _vaca_abduct, _vaca_counterfactual
VACA.latent_counterfactual, VACA.sample = _vaca_latent_counterfactual, _vaca_sample
VACA.interventional_sample = _vaca_interventional_sample


# %% [markdown]
# ## Training
#
# Maximise the ELBO on the causal-model pool: Adam lr $5\cdot 10^{-3}$, batch 1024, 300 epochs at paper
# settings (`vaca_epochs` of the profile), dropout 0.1 while training. The trainer reads its settings
# from the model's cache configuration, so what is trained is exactly what the cache key says.

# %%
#| export
@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_vaca(scm: SCM, pool: Pool, cfg: dict, verbose: bool) -> tuple[dict, dict, dict]:
    "Train VACA as `cfg` says (hidden, epochs, batch, lr, seed); state dict, scaler and training curves."
    torch.manual_seed(cfg['seed'])
    scaler = StandardScaler().fit(pool.train.x)
    model = VACA(scm.name, cfg['hidden'], scaler).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg['lr'])
    ztr, zva = scaler.transform(pool.train.x), scaler.transform(pool.val.x)
    g = torch.Generator().manual_seed(cfg['seed'])
    tr_curve, va_curve = [], []
    for _ in progress(range(cfg['epochs']), desc=f'VACA {scm.name}', disable=None if verbose else True):
        model.train()
        tot, zp = 0., ztr[torch.randperm(len(ztr), generator=g)]
        for zb in zp.split(cfg['batch']):
            loss = -model.elbo_std(zb).mean()
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            tot += float(loss.detach()) * len(zb)
        model.eval()
        with torch.no_grad(): va_curve.append(float(-model.elbo_std(zva).mean()))
        tr_curve.append(tot / len(ztr))
    extras = {'history_train_nelbo': torch.tensor(tr_curve), 'history_val_nelbo': torch.tensor(va_curve)}
    return model.state_dict(), scaler.state_dict(), extras

@dataclass(frozen=True)
class VacaFit(Fit):
    "How VACA is fitted (epochs, batch, lr of `Fit`) and its sizes."
    batch: int = 1024
    lr: float = 5e-3
    hidden: tuple[int, int] = VACA_HIDDEN   # node embedding width, latent size per node

    def __post_init__(self):
        super().__post_init__()
        hidden = check_widths(self.hidden, 'hidden')
        if len(hidden) != 2:
            raise ValueError(f"hidden must be (embedding width, latent size), whole numbers ≥ 1, "
                             f"got {hidden}")
        object.__setattr__(self, 'hidden', hidden)

def fit_vaca(scm: str | SCM, # the SCM whose graph VACA uses
             pool: Pool | Pools | None = None, # causal-model pool (default: make_pools(scm).causal)
             profile=None, # epochs from the profile (paper: 300)
             seed: int = 0, # initialisation and batch order
             fit: VacaFit | None = None, # sizes, epochs, batch, lr (default: the paper's)
             cache: bool = True, # reuse / store in the model cache
             verbose: bool = True) -> VACA:
    "Fit (or fetch from the cache) VACA on `scm`'s causal-model pool by maximising the ELBO (as `fit_flow`)."
    scm = get_scm(scm)
    pool = resolve_pool(scm, pool, 'causal')
    fit, seed = check_fit(fit, VacaFit), check_seed(seed)
    cfg = {'kind': 'vaca', 'trainer': TRAINER_VERSION, 'scm': scm.name,
           **fit.config(get_profile(profile).vaca_epochs), 'hidden': list(fit.hidden), 'seed': seed,
           'train': split_id(pool.train), 'val': split_id(pool.val)}
    return trained_model(VACA, 'vaca', cfg, lambda: _fit_vaca(scm, pool, cfg, verbose), cache)

def save_vaca(model: VACA, path): return save_model(model, path, 'vaca')
def load_vaca(path, scm: str | None = None) -> VACA: return load_model(VACA, path, 'vaca', scm)


# %%
profile = get_profile()
pools = make_pools('loan')
t0 = time.perf_counter()
vaca = fit_vaca('loan', pools.causal, profile, verbose=False)
print(f'{vaca}: {profile.vaca_epochs} epochs, {time.perf_counter() - t0:.1f} s (cached if fast)')
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(vaca.history['train_nelbo'], label='train'); ax.plot(vaca.history['val_nelbo'], label='validation')
ax.set_xlabel('epoch'); ax.set_ylabel('−ELBO (standardised)'); ax.legend(); plt.show()

# %% [markdown]
# Checks of the graph surgery and the interface: intervened features take their values; a node that is
# not a descendant of the intervention and not intervened is unaffected by the mutilation (its parents'
# messages are intact); the latent counterfactual with an empty mask is the plain reconstruction;
# save/load round-trips; a checkpoint of another SCM and bad input are refused.

# %%
loan = get_scm('loan')
x = pools.causal.test.x[:256]
m = torch.zeros(256, 7, dtype=torch.bool); m[:, loan.index('income')] = True
v = x.clone(); v[:, loan.index('income')] += 1.
cf = vaca.counterfactual(x, m, v)
test_eq(cf[:, loan.index('income')], v[:, loan.index('income')])
z = vaca.abduct(x)
test_eq(z.shape, (256, 7 * vaca.latent_size))
empty = vaca.latent_counterfactual(z, torch.zeros(256, 7), torch.randn(256, 28))
test_close(empty, vaca.unstandardise(vaca.decode_std(z.unflatten(-1, (7, 4)), vaca.graph())), eps=1e-5)
adj = vaca.graph(m)
test_eq(adj[0, loan.index('income')], torch.eye(7)[loan.index('income')])   # no edge into income but its loop
test_eq(adj[0, loan.index('savings')], vaca.graph()[loan.index('savings')])  # other nodes keep their parents
with tempfile.TemporaryDirectory() as d:
    p_ = save_vaca(vaca, Path(d)/'vaca.pt')
    test_eq(load_vaca(p_, 'loan').counterfactual(x, m, v), cf)
    test_fail(lambda: load_vaca(p_, 'chain-lin'), contains="scm='chain-lin' was requested")
test_fail(lambda: vaca.counterfactual(x[:, :5], m, v), contains='5 columns but 7 features')
test_fail(lambda: VacaFit(hidden=(16,)), contains='hidden must be (embedding width, latent size)')


# %% [markdown]
# ## VACA against the flow, and against the true SCM
#
# The same evaluation as chapter 4 on every SCM. VACA's log-likelihood column is the ELBO, a lower
# bound; the counterfactual error is directly comparable with the flow's.

# %%
#| export
def vaca_table(profile=None, # epochs from the profile
               seed: int = 0, # the draw of the data (pool seed)
               verbose: bool = False) -> pd.DataFrame:
    "VACA and the causal flow on every SCM, evaluated against the true SCM (chapter 4's metrics)."
    rows = []
    for name in SCM_NAMES:
        pools = make_pools(name, seed)
        v = evaluate_causal_model(fit_vaca(name, pools.causal, profile, verbose=verbose), name, pools)
        f = evaluate_causal_model(fit_flow(name, pools.causal, profile, verbose=verbose), name, pools)
        rows.append({'scm': name, 'VACA log-lik (ELBO)': v['log-lik'], 'flow log-lik': f['log-lik'],
                     'VACA obs MMD': v['obs MMD'], 'flow obs MMD': f['obs MMD'],
                     'VACA int MMD': v['int MMD'], 'flow int MMD': f['int MMD'],
                     'VACA cf error': v['cf error'], 'flow cf error': f['cf error'],
                     'paper flow cf error (reference)': PAPER_FLOW_CF_ERROR[name]})
    return pd.DataFrame(rows).set_index('scm')


# %%
table = vaca_table(profile)
save_table(table.round(4), 'vaca_vs_flow')
table.round(3)

# %% [markdown]
# VACA's counterfactuals are several times less accurate than the flow's on every SCM: its abduction is
# an encoder's guess, where the flow inverts exactly. That error is what CARMA inherits below.

# %%
ratio = table['VACA cf error'] / table['flow cf error']
assert (ratio > (3 if profile.name == 'paper' else 1.5)).all(), ratio
print(f'VACA counterfactual error / flow counterfactual error: {ratio.min():.1f}–{ratio.max():.1f}×')

# %% [markdown]
# ## CARMA with VACA: paper Fig. 3
#
# The CARMA code of chapters 7 and 8 is reused unchanged; only the causal model and the hyperparameter row
# differ: with a VACA as causal model, `train_carma_seeds` takes the paper's VACA row of Table 5 (wider
# networks, a smaller learning rate, the hinge margin 0.003). Paper Fig. 3 compares CARMA with either
# causal model on loan — cost, causal validity, acts and time per person at batch size 1 — with error
# bars over seeds.

# %%
#| export
PAPER_VACA_MARGIN = 0.003   # the hinge margin of the paper's VACA row (Table 5)
PAPER_FIG3 = pd.DataFrame({   # paper Fig. 3 (loan), read off its bars: references only
    'causal model': ['flow', 'VACA'], 'paper cost x100': [6.69, 13.], 'paper validity %': [99.95, 99.],
    'paper ms per person (batch size 1)': [1.17, 1.75]}).set_index('causal model')

def causal_model_comparison(profile=None, # seeds, epochs and people from the profile
                            seed0: int = 0, # the first CARMA seed
                            verbose: bool = False) -> pd.DataFrame:
    "Loan: CARMA with the flow vs with VACA, one row per (model, seed): cost, validity, acts, ms per person."
    p, seed0 = get_profile(profile), check_seed(seed0, 'seed0')
    ref = oracle_reference('loan', p)
    flow, vaca = (fit('loan', ref.pools.causal, p, verbose=False) for fit in (fit_flow, fit_vaca))
    rows, seeds = [], range(seed0, seed0 + p.seeds)
    for name, cm in (('flow', flow), ('VACA', vaca)):
        carmas = train_carma_seeds('loan', ref.clf, cm, ref.pools.recourse, seeds,
                                   CarmaOptions(profile=p, verbose=verbose))
        for s, m in zip(seeds, carmas):
            met = evaluate_recourse(ref.problem, ref.clf, ref.people, m.recommend(ref.people)).metrics
            t = time_per_person(m.recommend, ref.people, single=50)
            rows.append({'causal model': name, 'seed': s, 'margin': m.hp['margin'], **met,
                         'ms per person (batch size 1)': t['ms per person, batch size 1']})
    return pd.DataFrame(rows)

def mean_and_std(runs: pd.DataFrame, # one row per (causal model, seed)
                 cols: list[str], # the metrics to summarise
                ) -> pd.DataFrame:
    "Per causal model: the mean and the standard deviation over seeds of each metric, as flat columns."
    missing = [c for c in ['causal model', *cols] if c not in runs.columns]
    if missing: raise ValueError(f"runs has no column {missing}: pass the output of causal_model_comparison")
    g = runs.groupby('causal model', sort=False)[cols]
    out = pd.concat({'mean': g.mean(), 'std': g.std()}, axis=1)
    out.columns = [f'{c} {stat}' for stat, c in out.columns]
    return out[[f'{c} {stat}' for c in cols for stat in ('mean', 'std')]]


# %%
FIG3 = ['cost x100', 'validity %', 'acts', 'ms per person (batch size 1)']
runs = causal_model_comparison(profile)
fig3 = mean_and_std(runs, ['cost x100', 'coverage %', *FIG3[1:]]).join(PAPER_FIG3)
save_table(fig3.round(3), 'fig3_flow_vs_vaca')
test_eq(list(fig3.columns[:2]), ['cost x100 mean', 'cost x100 std'])   # readable headers, no tuples
test_fail(lambda: mean_and_std(runs, ['speed']), contains="runs has no column ['speed']")
fig3.round(3).T

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
for ax, col in zip(axes, FIG3):
    sns.barplot(runs, x='causal model', y=col, hue='causal model', errorbar='sd', ax=ax, capsize=.2,
                palette=['#1b9e77', '#e6ab02'], alpha=.6)
    sns.stripplot(runs, x='causal model', y=col, color='k', size=3, ax=ax)   # one dot per seed
    ax.set_title(col, fontsize=10); ax.set_xlabel(''); ax.set_ylabel('')
fig.suptitle(f'loan: CARMA with the causal flow vs with VACA ({profile.name} profile, {profile.seeds} seeds; '
             'paper Fig. 3)', y=1.06)
save_figure(fig, 'fig3_flow_vs_vaca')
plt.show()

# %% [markdown]
# What to read in the figure, and the checks that hold the chapter to it: CARMA trains and serves with
# VACA exactly as with the flow, and VACA is slower per person, as in the paper. But CARMA only ever sees
# its causal model, and VACA's counterfactual error (the table above) shows when its actions are replayed
# in the true SCM: CARMA with VACA leaves more people without recourse than CARMA with the flow, where
# the paper reports about 99 % for both. CARMA with VACA also costs less here than with the flow, where
# the paper found it about twice as dear; but a cost is worth comparing only between recommendations that
# hold, and fewer of VACA's do. How far a wider hinge margin closes the validity gap, and what it costs, is
# measured in [a study](../studies/11_vaca_margin.ipynb).

# %%
m_ = fig3['cost x100 mean']
t_ = fig3['ms per person (batch size 1) mean']
v_ = fig3['validity % mean']
print(f"cost: VACA {m_['VACA']:.2f} vs flow {m_['flow']:.2f} ({m_['VACA'] / m_['flow']:.2f}×, paper ≈ 2×); "
      f"validity: VACA {v_['VACA']:.2f} %, flow {v_['flow']:.2f} %; "
      f"time at batch size 1: {t_['VACA'] / t_['flow']:.1f}× the flow's in this run (paper 1.5×); "
      f"hinge margins {runs.groupby('causal model', sort=False)['margin'].first().to_dict()}")
assert t_['VACA'] > t_['flow'] and v_['VACA'] < v_['flow'], fig3.T
if profile.name == 'paper': assert m_['VACA'] < m_['flow'], fig3.T   # the cost the prose notes
test_eq(runs.groupby('causal model')['margin'].first()['VACA'], PAPER_VACA_MARGIN)

# %%
#| hide
import nbdev; nbdev.nbdev_export()

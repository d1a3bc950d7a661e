# %%
#| default_exp carma

# %% [markdown]
# # CARMA: amortized causal recourse
#
# > Two networks, trained once, that answer every person's recourse problem in one forward pass.
#
# The oracle of chapter 6 solves one combinatorial search per person, with the true SCM. CARMA
# (Majumdar & Valera, FAccT 2024) changes both halves of that:
#
# - the **causal normalizing flow** of chapter 4 stands in for the unknown SCM;
# - the search is **amortized**: the causal relations and the classifier are the same for the whole
#   population, so instead of solving each person's problem separately we *learn a function* from a
#   person to their action, trained on the rejected people of the recourse training split.
#
# The function has two parts (`SPEC.md` §8), both fed the person's exogenous latents $Z = T(\tilde x^F)$
# from the flow (computed once):
#
# - a **mask network** $q_\omega(Z)$ decides *which* features to act on: two logits per feature;
#   during training a hard straight-through Gumbel-softmax sample $a_j \in \{0,1\}$ (so the choice is
#   discrete but gradients flow), at evaluation simply $a_j = 1$ iff the "intervene" logit wins.
#   Non-actionable features are forced to $a_j = 0$.
# - an **action network** $f_\phi(Z, a)$ decides *by how much*: a shift $\delta$ of the intervened
#   features' latents, clamped to the latent range seen in training. The counterfactual is
#   $\tilde x^{CF} = T^{-1}(Z + a \odot \delta)$: the intervened features move, and their descendants
#   follow through the flow.
#
# The recommendation shown to the person is the counterfactual value of each intervened feature,
# $\theta_j = x^{CF}_j$ — which the evaluation replays as a hard intervention in the true SCM.

# %%
#| export
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from carma_nb.classifier import Classifier, train_classifier
from carma_nb.core import (TRAINER_VERSION, Checkpoint, Profile, as_features, cached_checkpoint, config_key,
                           get_profile, load_checkpoint, progress, save_checkpoint)
from carma_nb.data import Pool, Pools, StandardScaler, make_pools, resolve_pool, split_id
from carma_nb.flow import CausalFlow, fit_flow
from carma_nb.oracle import PAPER_ORACLE, oracle_reference
from carma_nb.recourse import as_weights, evaluate_recourse, recourse_problem, rejected, time_per_person
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
from pathlib import Path
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table
from carma_nb.oracle import cached_oracle

# %% [markdown]
# ## Hyperparameters
#
# The paper tuned each SCM separately (its Table 5). The profile scales the number of epochs
# (`carma_epoch_frac`: 1.0 at paper settings).

# %%
#| export
CARMA_HPARAMS: dict[str, dict] = {
    'triangle-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(8, 8, 8, 8), epochs=500, batch=32, margin=0.007, tau=0.55),
    'collider-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(32, 32, 32, 32), epochs=350, batch=256, margin=0.013, tau=0.31),
    'chain-lin':     dict(lr=5e-3, mask_hidden=(16,), action_hidden=(8, 8), epochs=150, batch=128, margin=0.004, tau=0.87),
    'triangle-nlin': dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(8, 8, 8, 8), epochs=450, batch=256, margin=0.003, tau=0.2),
    'collider-nlin': dict(lr=1e-2, mask_hidden=(16, 16, 16), action_hidden=(8, 8, 8), epochs=250, batch=64, margin=0.002, tau=0.83),
    'chain-nlin':    dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(32, 32, 32, 32), epochs=250, batch=256, margin=0.007, tau=0.08),
    'loan':          dict(lr=5e-3, mask_hidden=(32, 32), action_hidden=(32, 32, 32), epochs=450, batch=256, margin=0.011, tau=0.45),
    'loan-weighted': dict(lr=1e-3, mask_hidden=(16, 16, 16), action_hidden=(32, 32, 32, 32), epochs=450, batch=256, margin=0.007, tau=0.33),
}
DAMPING = 10.0       # c of the modified differential method of multipliers
WEIGHT_DECAY = 5e-4

def carma_hparams(scm: SCM | str, weighted: bool = False, **overrides) -> dict:
    "The paper's CARMA hyperparameters for `scm` (the weighted loan variant with `weighted=True`)."
    name = get_scm(scm).name
    key = 'loan-weighted' if weighted and name == 'loan' else name
    hp = dict(CARMA_HPARAMS.get(key, CARMA_HPARAMS['loan']))
    unknown = set(overrides) - set(hp)
    if unknown: raise ValueError(f"unknown CARMA hyperparameters {sorted(unknown)}; known: {sorted(hp)}")
    hp.update(overrides)
    if not (hp['lr'] > 0 and hp['epochs'] >= 1 and hp['batch'] >= 1 and hp['tau'] > 0 and hp['margin'] >= 0):
        raise ValueError(f"invalid CARMA hyperparameters {hp}: need lr > 0, epochs ≥ 1, batch ≥ 1, tau > 0, margin ≥ 0")
    return hp


# %% [markdown]
# ## The two networks
#
# Plain ReLU MLPs with Xavier-uniform weights (ReLU gain) and biases 0.01, as in the original code.
# `CARMA` holds both networks **and** the frozen flow and classifier they were trained with, so a saved
# CARMA model is everything a deployment needs.

# %%
#| export
def mlp(sizes: list[int]) -> nn.Sequential:
    "ReLU MLP with Xavier-uniform (ReLU gain) weights and 0.01 biases; no activation after the last layer."
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_uniform_(lin.weight, gain=nn.init.calculate_gain('relu'))
        nn.init.constant_(lin.bias, 0.01)
        layers.append(lin)
        if i < len(sizes) - 2: layers.append(nn.ReLU())
    return nn.Sequential(*layers)

class CARMA(nn.Module):
    "Mask and action networks over a frozen causal flow and classifier."
    def __init__(self, flow: CausalFlow, clf: Classifier, hp: dict, z_range: tuple[float, float]):
        super().__init__()
        if flow.scm != clf.scm: raise ValueError(f"flow is for {flow.scm!r} but the classifier for {clf.scm!r}")
        scm = get_scm(flow.scm)
        D = scm.n_features
        self.scm, self.hp, self.names = scm.name, dict(hp), scm.names
        self.flow, self.clf = flow, clf
        self.mask_net = mlp([D, *hp['mask_hidden'], 2 * D])
        self.action_net = mlp([2 * D, *hp['action_hidden'], D])
        act = torch.zeros(D); act[scm.actionable] = 1.
        self.register_buffer('actionable', act)
        self.register_buffer('z_range', torch.tensor(z_range, dtype=torch.float32))

    @property
    def n_features(self): return len(self.names)

    def policy(self, z: torch.Tensor, # (n, D) factual latents
               sample: bool = False, # True: straight-through hard Gumbel-softmax (training); False: argmax
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        "Mask a (n, D) in {0,1}, clamped latent shift δ (n, D), and the mask logits (n, D, 2)."
        logits = self.mask_net(z).unflatten(-1, (self.n_features, 2))     # [..., 0] keep, [..., 1] intervene
        if sample: a = F.gumbel_softmax(logits, tau=self.hp['tau'], hard=True)[..., 1]
        else: a = (logits[..., 1] > logits[..., 0]).to(z.dtype)
        a = a * self.actionable
        delta = self.action_net(torch.cat([z, a], -1)).clamp(float(self.z_range[0]), float(self.z_range[1]))
        return a, delta, logits

    def __repr__(self):
        return (f"CARMA({self.scm!r}, mask {list(self.hp['mask_hidden'])}, action {list(self.hp['action_hidden'])}, "
                f"flow {list(self.flow.hidden)}, classifier {list(self.clf.hidden) or 'logistic'})")


# %%
net = mlp([7, 16, 14])
test_eq([type(l).__name__ for l in net], ['Linear', 'ReLU', 'Linear'])
test_eq(net[0].bias.detach(), torch.full((16,), 0.01))
test_eq(carma_hparams('loan')['action_hidden'], (32, 32, 32))
test_eq(carma_hparams('loan', weighted=True)['lr'], 1e-3)           # the weighted-loan row of Table 5
test_eq(carma_hparams('loan', epochs=10)['epochs'], 10)
test_fail(lambda: carma_hparams('loan', learning_rate=1), contains='unknown CARMA hyperparameters')
test_fail(lambda: carma_hparams('loan', tau=0), contains='tau > 0')
CARMA(fit_flow('loan', verbose=False), train_classifier('loan', verbose=False), carma_hparams('loan'), (-4., 4.))   # untrained, for its shape


# %% [markdown]
# ## Recommending
#
# One forward pass for a whole batch of people: abduct their latents, run the policy, decode the
# counterfactual through the flow. The recommended values are the counterfactual values of the
# intervened features. People the classifier already accepts need nothing: they get an empty action
# and `accepted=True`, not an error.

# %%
#| export
@dataclass
class Recommendation:
    "CARMA's answer per person."
    mask: torch.Tensor      # (n, D) bool: features to act on
    values: torch.Tensor    # (n, D) raw target values (the factual where not acted on)
    x_cf: torch.Tensor      # (n, D) counterfactual under the flow
    prob: torch.Tensor      # (n,) classifier probability of x_cf
    accepted: torch.Tensor  # (n,) bool: already accepted, nothing to do

def _recommend(self: CARMA, x: torch.Tensor) -> Recommendation:
    "Recommendations for raw features x (n, D) in one forward pass."
    x = as_features(x, self.n_features, 'x', self.names)
    with torch.inference_mode():
        accepted = self.clf.predict_proba(x, check=False) >= 0.5
        z = self.flow.abduct(x)
        a, delta, _ = self.policy(z)
        a = a * ~accepted[:, None]
        x_cf = torch.where(accepted[:, None], x, self.flow.latent_counterfactual(z, a, delta))
        mask = a.bool()
        return Recommendation(mask, torch.where(mask, x_cf, x), x_cf, self.clf.predict_proba(x_cf, check=False), accepted)

CARMA.recommend = _recommend


# %% [markdown]
# ## The loss
#
# Per mini-batch of $B$ people with $p_b = h(x^{CF}_b)$:
#
# - **cost** $C$: the mean cost of chapter 5 (with the preference weights) — cheap actions;
# - **mask prior** $K$: $\sum_{j} \mathrm{KL}(\mathrm{Cat}(\mathrm{softmax}(\text{logits}_j)) \,\|\, \mathrm{Bernoulli}(\pi_j))$
#   over actionable features, averaged over the batch — keeps the mask network from collapsing early
#   ($\pi_j = 0.5$, or $1/(2w_j)$ with the preference prior of chapter 8);
# - **validity hinge** $g = \frac1B\sum_b \max(0, 1 + \varepsilon - 2p_b)$, zero iff every $p_b \ge (1+\varepsilon)/2$.
#
# The total is $L = C + K + (\lambda + c\cdot \mathrm{sg}(g))\,g$ with damping $c = 10$, and after every
# step $\lambda \leftarrow \max(0, \lambda + g)$: a modified differential method of multipliers. The
# multiplier $\lambda$ grows while actions are invalid and so forces validity as a constraint rather than
# a tuned penalty. **One correction to the original code:** it applies the damping with a minus sign,
# which *rewards* invalidity early in training; we use the plus sign, as the method intends.

# %%
#| export
def mask_kl(logits: torch.Tensor, # (n, D, 2) mask logits
            prior: torch.Tensor, # (D,) prior probability of intervening π_j
            actionable: torch.Tensor, # (D,) 1 on actionable features
           ) -> torch.Tensor:
    "Per-person Σ_actionable KL(Cat(softmax(logits_j)) ‖ Bernoulli(π_j)), shape (n,)."
    logq = F.log_softmax(logits, -1)
    q1 = logq[..., 1].exp()
    kl = q1 * (logq[..., 1] - torch.log(prior)) + (1 - q1) * (logq[..., 0] - torch.log1p(-prior))
    return (kl * actionable).sum(-1)

def carma_loss(model: CARMA, problem, xb: torch.Tensor, zb: torch.Tensor, weights: torch.Tensor,
               prior: torch.Tensor, lam: float) -> tuple[torch.Tensor, dict]:
    "CARMA's loss on one batch, and its parts (cost, kl, hinge, validity) as floats."
    a, delta, logits = model.policy(zb, sample=True)
    x_cf = model.flow.latent_counterfactual(zb, a, delta)
    p = model.clf.predict_proba(x_cf, check=False)
    cost = problem.cost(xb, x_cf, a, weights).mean()
    kl = mask_kl(logits, prior, model.actionable).mean()
    g = F.relu(1 + model.hp['margin'] - 2 * p).mean()
    loss = cost + kl + (lam + DAMPING * g.detach()) * g
    return loss, {'cost': float(cost.detach()), 'kl': float(kl.detach()), 'hinge': float(g.detach()),
                  'valid': float((p >= 0.5).float().mean())}


# %%
x_demo = torch.randn(3, 7)
test_close(mask_kl(torch.zeros(3, 7, 2), torch.full((7,), 0.5), torch.ones(7)), torch.zeros(3), eps=1e-6)  # q = π: no penalty
assert (mask_kl(torch.tensor([[[0., 3.]] * 7]), torch.full((7,), 0.5), torch.ones(7)) > 0).all()


# %% [markdown]
# ## Training
#
# Trained once per SCM and seed on the rejected people of the recourse training split, with Adam
# (weight decay $5\cdot10^{-4}$), no scheduler, the final epoch's weights. The latents $Z$ are computed
# once; the flow and classifier stay frozen, and gradients pass *through* them to the two networks.
# Per epoch we record the cost, the hinge, $\lambda$ and the share of valid counterfactuals under the
# flow.

# %%
#| export
def _fit_carma(scm, flow, clf, pool, hp, weights, prior_kind, seed, verbose):
    torch.manual_seed(seed)
    problem = recourse_problem(scm, pool, weights)
    with torch.no_grad():
        x = rejected(clf, pool.train.x)
        z = flow.abduct(x)
    z_range = (math.floor(float(z.min())), math.ceil(float(z.max())))
    model = CARMA(flow, clf, hp, z_range)
    w = problem.weights
    prior = (1 / (2 * w)) if prior_kind == 'preference' else torch.full_like(w, 0.5)
    params = [*model.mask_net.parameters(), *model.action_net.parameters()]
    opt = torch.optim.Adam(params, lr=hp["lr"], weight_decay=WEIGHT_DECAY, fused=True)
    g = torch.Generator().manual_seed(seed)
    lam, curves = 0.0, {k: [] for k in ('cost', 'kl', 'hinge', 'lambda', 'valid')}
    for _ in progress(range(hp['epochs']), desc=f'CARMA {scm.name}', disable=None if verbose else True):
        sums, n = dict.fromkeys(('cost', 'kl', 'hinge', 'valid'), 0.), 0
        for idx in torch.randperm(len(x), generator=g).split(hp['batch']):
            loss, parts = carma_loss(model, problem, x[idx], z[idx], w, prior, lam)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
            lam = max(0.0, lam + parts['hinge'])
            for k in sums: sums[k] += parts[k] * len(idx)
            n += len(idx)
        for k in sums: curves[k].append(sums[k] / n)
        curves['lambda'].append(lam)
    sd = {k: v for k, v in model.state_dict().items() if k.startswith(('mask_net.', 'action_net.', 'actionable', 'z_range'))}
    return sd, None, {f'history_{k}': torch.tensor(v) for k, v in curves.items()}

def train_carma(scm: SCM | str, # the SCM
                clf: Classifier, # its frozen classifier
                flow: CausalFlow, # its fitted causal flow
                pool: Pool | Pools | None = None, # the recourse pool (default: make_pools(scm).recourse)
                hparams: dict | None = None, # overrides of the paper's hyperparameters (carma_hparams)
                profile: str | Profile | None = None, # scales the epochs (paper: as in SPEC §8)
                seed: int = 0, # initialisation, Gumbel noise, batch order
                weights=None, # preference weights (chapter 8)
                prior: str = 'uniform', # mask prior: 'uniform' (π = 0.5) or 'preference' (π = 1/(2w))
                cache: bool = True, verbose: bool = True) -> CARMA:
    "Train (or fetch from the cache) CARMA's mask and action networks for `scm` (SPEC §8)."
    scm = get_scm(scm)
    for what, m in (('classifier', clf), ('flow', flow)):
        if m.scm != scm.name: raise ValueError(f"the {what} was trained for {m.scm!r}, not {scm.name!r}")
    if prior not in ('uniform', 'preference'): raise ValueError(f"prior must be 'uniform' or 'preference', got {prior!r}")
    pool = resolve_pool(scm, pool, 'recourse')
    weighted = weights is not None
    hp = carma_hparams(scm, weighted, **(hparams or {}))
    if hparams is None or 'epochs' not in hparams:
        hp['epochs'] = max(1, round(hp['epochs'] * get_profile(profile).carma_epoch_frac))
    hp = {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()}
    w = as_weights(scm, weights)
    cfg = {'kind': 'carma', 'trainer': TRAINER_VERSION, 'scm': scm.name, 'hp': hp, 'seed': seed, 'prior': prior,
           'weights': w.tolist(), 'train': split_id(pool.train), 'flow': getattr(flow, 'config', None),
           'classifier': getattr(clf, 'config', None)}
    fit = lambda: _fit_carma(scm, flow, clf, pool, hp, w, prior, seed, verbose)
    if cache: ck = cached_checkpoint('carma', cfg, fit)
    else:
        sd, sc, extras = fit()
        ck = Checkpoint(sd, cfg, sc, None, extras)
    return _carma_from_checkpoint(ck, flow, clf)

def _carma_from_checkpoint(ck: Checkpoint, flow: CausalFlow, clf: Classifier) -> CARMA:
    cfg = ck.config
    model = CARMA(flow, clf, cfg['hp'], tuple(ck.state_dict['z_range'].tolist()))
    model.load_state_dict(ck.state_dict, strict=False)
    model.history = {k.removeprefix('history_'): v for k, v in (ck.extras or {}).items()}
    model.config = cfg
    model.eval()
    for p in model.parameters(): p.requires_grad_(False)
    return model


# %%
profile = get_profile()
pools = make_pools('loan')
clf = train_classifier('loan', pools.classifier, profile, verbose=False)
flow = fit_flow('loan', pools.causal, profile, verbose=False)
t0 = time.perf_counter()
carma = train_carma('loan', clf, flow, pools.recourse, profile=profile, seed=0, cache=False, verbose=False)
train_seconds = time.perf_counter() - t0
print(f'{carma}: {carma.hp["epochs"]} epochs in {train_seconds:.1f} s (profile {profile.name}, not cached)')

# %% [markdown]
# The training curves tell the story of the multiplier: early on many counterfactuals are invalid,
# the hinge is large and $\lambda$ climbs; as validity reaches 100 % the hinge vanishes, $\lambda$ stops
# growing, and the cost term is free to shrink the actions.

# %%
h = carma.history
fig, axes = plt.subplots(1, 4, figsize=(15, 2.8))
for ax, k, t in zip(axes, ('cost', 'hinge', 'lambda', 'valid'), ('cost (SPEC §6 units)', 'validity hinge g', 'multiplier λ', 'valid under the flow')):
    ax.plot(h[k].numpy()); ax.set_title(t, fontsize=10); ax.set_xlabel('epoch')
fig.suptitle(f'CARMA on loan: training curves ({profile.name} profile)', y=1.05)
save_figure(fig, 'carma_training_loan')
plt.show()

# %% [markdown]
# ## Checking the model
#
# On the training people the recommendations are valid under the flow; the mask never touches a
# non-actionable feature; evaluation is deterministic; people already accepted get an empty action;
# saving and loading gives identical recommendations; bad input is refused.

# %%
train_people = rejected(clf, pools.recourse.train.x)
rec = carma.recommend(train_people)
print(f"valid under the flow on the training people: {float((rec.prob >= 0.5).float().mean()):.4f}")
test_eq(rec.mask[:, get_scm('loan').immutable + [4]].any(), torch.tensor(False))
test_eq(carma.recommend(train_people[:50]).values, carma.recommend(train_people[:50]).values)
ok = pools.recourse.test.x[clf.predict_proba(pools.recourse.test.x) >= 0.5][:5]
r_ok = carma.recommend(ok)
test_eq(r_ok.accepted.all(), torch.tensor(True)); test_eq(r_ok.mask.any(), torch.tensor(False)); test_eq(r_ok.values, ok)
test_fail(lambda: carma.recommend(torch.zeros(2, 5)), contains='5 columns but 7 features')
test_fail(lambda: carma.recommend(torch.full((1, 7), float('nan'))), contains='NaN or inf')

# %% [markdown]
# Gradients reach both networks through the frozen flow and classifier:

# %%
m = CARMA(carma.flow, carma.clf, carma.hp, tuple(carma.z_range.tolist()))   # a trainable copy
m.load_state_dict(carma.state_dict())
problem = recourse_problem('loan', pools.recourse)
loss, _ = carma_loss(m, problem, train_people[:64], flow.abduct(train_people[:64]), problem.weights, torch.full((7,), .5), 1.0)
loss.backward()
assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.mask_net.parameters() if p.ndim == 2)
assert all(p.grad is not None for p in m.action_net.parameters())
assert all(p.grad is None for p in m.flow.parameters()) and all(p.grad is None for p in m.clf.parameters())


# %% [markdown]
# ### Saving and loading
#
# A CARMA checkpoint holds the two networks, the frozen flow and the classifier (each with its
# scaler), and the configuration: everything `carma-nb recommend` needs to serve applicants.

# %%
#| export
def save_carma(model: CARMA, path) -> Path:
    "Save CARMA with its flow and classifier (weights, scalers, configs) in one checkpoint."
    cfg = {'kind': 'carma-model', 'scm': model.scm, 'hp': model.hp, 'flow_hidden': list(model.flow.hidden),
           'clf_hidden': list(model.clf.hidden), 'train_config': getattr(model, 'config', None)}
    return save_checkpoint(path, model.state_dict(), cfg)

def load_carma(path, scm: str | None = None) -> CARMA:
    "Load a saved CARMA model (flow and classifier included); with `scm`, refuse one of another SCM."
    ck = load_checkpoint(path, expect={'kind': 'carma-model', **({'scm': get_scm(scm).name} if scm else {})})
    cfg, sd = ck.config, ck.state_dict
    sub = lambda p: {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
    flow = CausalFlow(cfg['scm'], tuple(cfg['flow_hidden']), StandardScaler(sub('flow.')['mean'], sub('flow.')['std']))
    flow.load_state_dict(sub('flow.')); flow.freeze()
    clf = Classifier(cfg['scm'], tuple(cfg['clf_hidden']), StandardScaler(sub('clf.')['mean'], sub('clf.')['std']))
    clf.load_state_dict(sub('clf.')); clf.freeze()
    model = _carma_from_checkpoint(Checkpoint(sd, cfg['train_config'] or {'hp': cfg['hp']}, None), flow, clf)
    return model


# %%
with tempfile.TemporaryDirectory() as d:
    path = save_carma(carma, Path(d)/'carma.pt')
    again = load_carma(path, scm='loan')
    test_eq(again.recommend(train_people).values, rec.values)
    test_fail(lambda: load_carma(path, scm='chain-lin'), contains="has scm='loan' but scm='chain-lin' was requested")

# %% [markdown]
# ## CARMA against the oracle on loan
#
# The test people the classifier rejects, served by CARMA (one forward pass) and by the oracle
# (exhaustive search with the true SCM), evaluated by the same function. CARMA's coverage is measured
# under the flow, its causal validity by replaying its recommended values in the true SCM.

# %%
test_people = rejected(clf, pools.recourse.test.x, profile.oracle_people)
rec = carma.recommend(test_people)
rep = evaluate_recourse(problem, clf, test_people, rec.mask, rec.values, rec.x_cf)
orc = cached_oracle('loan', pools, clf, test_people)
orep = evaluate_recourse(problem, clf, test_people, orc.mask, orc.values, orc.x_cf, orc.found)
pd.DataFrame([rep.metrics, orep.metrics], index=['CARMA', 'oracle']).round(3)

# %% [markdown]
# Speed, both ways (`SPEC.md` §6): one person at a time, and the whole test set in one batch.

# %%
timing = time_per_person(lambda xb: carma.recommend(xb), test_people, single=100)
{k: round(v, 4) for k, v in timing.items()}

# %% [markdown]
# ### Paper Fig. 2 and Fig. 7
#
# How CARMA and the oracle act on loan: the distribution of the shift $x^{CF} - x^F$ of each actionable
# feature among the people who act on it (Fig. 2), and how many features each person acts on and how
# often each feature is chosen (Fig. 7).

# %%
act = get_scm('loan').actionable
fig, axes = plt.subplots(1, 4, figsize=(16, 3))
for ax, j in zip(axes, act):
    for r, res, c in (('CARMA', rep, '#1b9e77'), ('oracle', orep, '#d95f02')):
        s = res.shift[res.mask[:, j], j].numpy()
        if len(s): ax.hist(s, bins=30, alpha=.6, color=c, label=f'{r} (n={len(s)})', density=True)
    ax.set_title(get_scm('loan').names[j]); ax.legend(fontsize=8)
fig.suptitle('loan: shift x_CF − x_F of each intervened feature (paper Fig. 2)', y=1.05)
save_figure(fig, 'fig2_shifts_carma_vs_oracle')
plt.show()

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3))
counts = pd.DataFrame({r: pd.Series(res.mask.sum(1).numpy()).value_counts(normalize=True).sort_index() * 100
                       for r, res in (('CARMA', rep), ('oracle', orep))}).fillna(0)
counts.plot.bar(ax=a1, color=['#1b9e77', '#d95f02']); a1.set_xlabel('number of features intervened'); a1.set_ylabel('% of people')
pd.DataFrame({'CARMA': rep.per_feature['intervened %'], 'oracle': orep.per_feature['intervened %']}).plot.bar(ax=a2, color=['#1b9e77', '#d95f02'])
a2.set_ylabel('% of people'); a2.set_xlabel(''); a2.tick_params(axis='x', rotation=0); a1.tick_params(axis='x', rotation=0)
fig.suptitle('loan: CARMA vs oracle (paper Fig. 7)', y=1.03)
save_figure(fig, 'fig7_features_carma_vs_oracle')
plt.show()

# %% [markdown]
# ## All seven SCMs
#
# CARMA with each SCM's paper hyperparameters, over the profile's seeds, against the oracle on the
# same rejected test people; the paper's Table 1 values alongside. The targets at paper settings
# (10 seeds): causal validity ≥ 99.5 % and cost ≤ 1.10 × the oracle's on every SCM.

# %%
#| export
PAPER_CARMA = pd.DataFrame({  # paper Table 1, CARMA columns: references shown next to ours, never results
    'scm': ['triangle-lin', 'collider-lin', 'chain-lin', 'triangle-nlin', 'collider-nlin', 'chain-nlin', 'loan'],
    'paper CARMA cost x100': [11.36, 10.36, 10.62, 8.95, 4.19, 11.81, 6.69],
    'paper CARMA acts': [1.45, 2.37, 2.26, 1.96, 2.62, 2.32, 2.89],
    'paper CARMA validity %': [99.94, 99.98, 99.91, 99.89, 99.74, 99.98, 99.95]}).set_index('scm')

def carma_table(profile=None, scms=SCM_NAMES, seed0: int = 0, verbose: bool = False) -> pd.DataFrame:
    "CARMA (mean ± std over the profile's seeds) and the oracle on every SCM's rejected test people."
    p = get_profile(profile)
    rows = []
    for name in scms:
        ref = oracle_reference(name, p)
        flow = fit_flow(name, ref.pools.causal, p, verbose=False)
        per_seed = []
        for s in range(seed0, seed0 + p.seeds):
            m = train_carma(name, ref.clf, flow, ref.pools.recourse, profile=p, seed=s, verbose=verbose)
            r = m.recommend(ref.people)
            per_seed.append(evaluate_recourse(ref.problem, ref.clf, ref.people, r.mask, r.values, r.x_cf).metrics)
        df, o = pd.DataFrame(per_seed), ref.metrics
        rows.append({'scm': name, 'seeds': p.seeds, 'people': len(ref.people),
                     'CARMA cost x100': df['cost x100'].mean(), 'cost std': df['cost x100'].std(),
                     'oracle cost x100': o['cost x100'], 'cost / oracle': df['cost x100'].mean() / o['cost x100'],
                     'CARMA validity %': df['validity %'].mean(), 'validity min %': df['validity %'].min(),
                     'CARMA coverage %': df['coverage %'].mean(), 'CARMA acts': df['acts'].mean(), 'oracle acts': o['acts'],
                     'CARMA prob': df['prob'].mean()})
    paper_oracle = PAPER_ORACLE[['paper cost x100']].rename(columns={'paper cost x100': 'paper oracle cost x100'})
    return pd.DataFrame(rows).set_index('scm').join(PAPER_CARMA).join(paper_oracle)


# %%
table = carma_table(profile)
save_table(table.round(3), 'carma_table1')
print(f'profile: {profile.name} ({profile.seeds} seeds, {profile.carma_epoch_frac:.0%} of the paper epochs)')
table.round(3)

# %%
assert (table['CARMA validity %'] > 80).all()

# %% [markdown]
# **Status of this chapter.** The outputs committed here come from the **quick** profile (5 % of the
# paper's epochs, 2 seeds, 200 people), so the table above says nothing yet about the paper's targets.
# A first run at paper settings on loan (3 seeds, all 2 310 rejected test people, not yet part of this
# chapter) measured:
#
# | | seed 0 | seed 1 | seed 2 | target |
# |---|---|---|---|---|
# | causal validity % | 99.96 | 100 | 100 | ≥ 99.5 |
# | cost ×100 (oracle: 4.10) | 12.60 | 12.64 | 15.42 | ≤ 1.10 × oracle |
# | acts (oracle: 1.39) | 2.63 | 2.69 | 3.14 | |
# | training, 450 epochs | 68 s | 55 s | 65 s | < 40 s |
# | ms per person, batch size 1 | 1.03 | 1.12 | 1.05 | ≤ 0.15 |
# | µs per person, whole test set in one batch | 3.0 | 3.2 | 3.0 | ≤ 3 |
#
# Validity is there; cost is about 3× the oracle's, with about twice as many features per action.
# Two one-off diagnostics (seed 0, paper settings, scripts not part of the package) locate the cause in
# the balance of the loss rather than in the mask prior: scaling the KL term by 0.1 during training
# barely helps (cost 11.6, acts 2.76), while scaling the **cost** term by 10 brings the cost to 6.72
# (1.64× the oracle) at 100 % validity. The multiplier λ, which can only grow because the hinge is never
# negative, ends at ≈ 31 (≈ 104 with the scaled cost). Our classifiers are much sharper than the original
# work's (chapter 3), which plausibly changes this balance; that is the next thing to study, within the
# method's hyperparameter search (SPEC §8) rather than by changing its loss. Training speed is bound by
# per-operation overhead on 256-person batches (a fused Adam kernel brought a step from ≈ 9 to ≈ 7 ms).

# %%
#| hide
import nbdev; nbdev.nbdev_export()

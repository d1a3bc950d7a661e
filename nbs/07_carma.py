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
#   features' latents, clamped to the latent range seen in training (on two SCMs, twice that range:
#   see "Our second addition" below). The counterfactual is
#   $\tilde x^{CF} = T^{-1}(Z + a \odot \delta)$: the intervened features move, and their descendants
#   follow through the flow.
#
# The recommendation shown to the person is the counterfactual value of each intervened feature,
# $\theta_j = x^{CF}_j$ — which the evaluation replays as a hard intervention in the true SCM.

# %%
#| export
from __future__ import annotations

import importlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from carma_nb.classifier import Classifier, train_classifier
from carma_nb.core import (TRAINER_VERSION, Checkpoint, Profile, as_features, cached_checkpoints, check_positive, check_seeds,
                           check_whole, check_widths, get_profile, load_checkpoint, load_weights, one_thread, progress,
                           save_checkpoint)
from carma_nb.data import Pool, Pools, StandardScaler, make_pools, resolve_pool, split_id
from carma_nb.flow import CausalFlow, fit_flow
from carma_nb.oracle import PAPER_ORACLE, oracle_reference
from carma_nb.recourse import Recommendation, as_weights, evaluate_recourse, recourse_problem, rejected, time_per_person
from carma_nb.recourse import DOMAIN_MARGIN, FeatureDomain, feature_domain, training_range
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table
from carma_nb.oracle import cached_oracle
from IPython.display import display

# %% [markdown]
# ## Hyperparameters
#
# The paper tuned each SCM separately (its Table 5); `temperature`, `shift_scale`, `restarts`, `refine_epochs` and `polish_epochs` are our additions,
# explained with the loss below. The profile scales the number of epochs (`carma_epoch_frac`: 1.0 at paper settings).

# %%
#| export
CARMA_HPARAMS: dict[str, dict] = {
    'triangle-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(8, 8, 8, 8), epochs=500, batch=32, margin=0.007, tau=0.55, temperature=4, restarts=6, refine_epochs=300, polish_epochs=150),
    'collider-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(32, 32, 32, 32), epochs=350, batch=256, margin=0.013, tau=0.31, temperature=4, refine_epochs=300, polish_epochs=150),
    'chain-lin':     dict(lr=5e-3, mask_hidden=(16,), action_hidden=(8, 8), epochs=150, batch=128, margin=0.004, tau=0.87, temperature=1, restarts=6, refine_epochs=300, polish_epochs=150),
    'triangle-nlin': dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(8, 8, 8, 8), epochs=450, batch=256, margin=0.03, tau=0.2, temperature=1, shift_scale=2, restarts=6, refine_epochs=300, polish_epochs=150),   # ε: 0.003 in Table 5
    'collider-nlin': dict(lr=1e-2, mask_hidden=(16, 16, 16), action_hidden=(8, 8, 8), epochs=250, batch=64, margin=0.002, tau=0.83, temperature=1, restarts=6, polish_epochs=150),
    'chain-nlin':    dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(32, 32, 32, 32), epochs=250, batch=256, margin=0.007, tau=0.08, temperature=1, shift_scale=2, polish_epochs=150),
    'loan':          dict(lr=5e-3, mask_hidden=(32, 32), action_hidden=(32, 32, 32), epochs=450, batch=256, margin=0.011, tau=0.45, temperature=4, restarts=1, polish_epochs=150),
    'loan-weighted': dict(lr=1e-3, mask_hidden=(16, 16, 16), action_hidden=(32, 32, 32, 32), epochs=450, batch=256, margin=0.007, tau=0.33, temperature=4, polish_epochs=150),
    'loan-vaca':     dict(lr=5e-4, mask_hidden=(64, 64, 64), action_hidden=(64, 64, 64, 64), epochs=450, batch=256, margin=0.03, tau=0.4, temperature=4),   # ε: 0.003 in Table 5 (chapter 10)
}   # temperature, shift_scale, restarts, refine_epochs and polish_epochs: our additions, chosen per SCM on the validation people (tools/sweep_hparam.py; chapter status)
DAMPING = 10.0       # c of the modified differential method of multipliers
TEMPERATURE = 1.0    # our addition: the hinge sees σ(logit / T), T = max(1, TEMPERATURE · median |logit| of the rejected; 0 = the paper's loss)
SHIFT_SCALE = 1.0    # our addition: δ is clamped to shift_scale · [⌊min Z⌋, ⌈max Z⌉]; 1 = the paper's clamp
RESTARTS = 3         # our addition: train this many candidates per seed, keep the best on the training people (1 = the paper)
WEIGHT_DECAY = 5e-4
POLISH_LR = 1e-4     # our addition: learning rate of the optional amount-polishing phase (`polish_epochs`, 0 = none = the paper)
OPTIONAL_HPARAMS = ('polish_epochs', 'polish_lr', 'refine_epochs', 'refine_lr')   # set only in the rows that use them, so the other rows' cache keys stay unchanged

def carma_hparams(scm: SCM | str, variant: str | None = None, **overrides) -> dict:
    "The paper's CARMA hyperparameters for `scm`; `variant` 'weighted' or 'vaca' picks loan's other rows of Table 5."
    name = get_scm(scm).name
    if variant not in (None, 'weighted', 'vaca'): raise ValueError(f"variant must be None, 'weighted' or 'vaca', got {variant!r}")
    key = f'{name}-{variant}' if variant else name
    if variant and key not in CARMA_HPARAMS: key = f'loan-{variant}'   # only loan was tuned for the variants; reuse its row
    hp = {'temperature': TEMPERATURE, 'shift_scale': SHIFT_SCALE, 'restarts': RESTARTS, **CARMA_HPARAMS.get(key, CARMA_HPARAMS['loan'])}
    unknown = set(overrides) - set(hp) - set(OPTIONAL_HPARAMS)
    if unknown: raise ValueError(f"unknown CARMA hyperparameters {sorted(unknown)}; known: {sorted(hp)}")
    hp.update(overrides)
    return _checked_hparams(hp)

def _checked_hparams(hp: dict) -> dict:
    "CARMA's hyperparameters checked one by one (counts whole, rates finite and positive, widths ≥ 1), up front."
    for k in ('lr', 'tau', 'shift_scale', 'polish_lr', 'refine_lr'):
        if k in hp: hp[k] = check_positive(hp[k], k)
    for k in ('margin', 'temperature'): hp[k] = check_positive(hp[k], k, zero=True)
    for k in ('epochs', 'batch', 'restarts'): hp[k] = check_whole(hp[k], k)
    for k in ('polish_epochs', 'refine_epochs'):
        if k in hp: hp[k] = check_whole(hp[k], k, 0)
    for k in ('mask_hidden', 'action_hidden'): hp[k] = check_widths(hp[k], k)
    return hp

#: Table 5's hinge margin where our rows use another one (chosen on validation people; chapters 7 and 10).
TABLE5_MARGIN = {'triangle-nlin': 0.003, 'loan-vaca': 0.003}

def paper_algorithm(scm: SCM | str, variant: str | None = None) -> dict:
    "Overrides of `carma_hparams` that switch our additions off and restore Table 5's margin: CARMA as the paper trains it."
    name = get_scm(scm).name
    key = f'{name}-{variant}' if variant else name
    return {'temperature': 0., 'shift_scale': 1., 'restarts': 1, 'polish_epochs': 0, 'refine_epochs': 0,
            **({'margin': TABLE5_MARGIN[key]} if key in TABLE5_MARGIN else {})}


# %% [markdown]
# The rows above are the paper's Table 5 plus our additions, each explained where it is introduced
# below (the tempered hinge, the wider clamp, restarts, mask refinement, polishing). `paper_algorithm`
# gives the overrides that switch all of them off and put back Table 5's margin where ours differs:
# CARMA exactly as the paper trains it, for comparisons such as chapter 13's.

# %%
ours, papers = carma_hparams('triangle-nlin'), carma_hparams('triangle-nlin', **paper_algorithm('triangle-nlin'))
pd.DataFrame({'ours': ours, "the paper's": papers}).loc[['temperature', 'shift_scale', 'restarts', 'refine_epochs', 'polish_epochs', 'margin']]

# %%
test_eq((papers['temperature'], papers['restarts'], papers['shift_scale'], papers['polish_epochs'], papers['refine_epochs'], papers['margin']),
        (0, 1, 1, 0, 0, 0.003))
test_eq({k: v for k, v in papers.items() if k in ('lr', 'epochs', 'batch', 'tau', 'mask_hidden', 'action_hidden')},
        {k: v for k, v in ours.items() if k in ('lr', 'epochs', 'batch', 'tau', 'mask_hidden', 'action_hidden')})   # Table 5's own settings stay
test_eq(carma_hparams('loan', **paper_algorithm('loan'))['margin'], carma_hparams('loan')['margin'])

# %% [markdown]
# Every hyperparameter is checked before anything trains, by the rules of chapter 0: counts are whole
# numbers, rates finite and positive, layer widths at least 1. A typo such as `epochs=2.5` or
# `mask_hidden=[0]` is an error that names the setting, not a model trained on something else.

# %%
for bad, message in (({'epochs': 2.5}, 'epochs must be a whole number ≥ 1'), ({'epochs': '5'}, 'epochs must be a whole number'),
                     ({'lr': float('inf')}, 'lr must be a finite number > 0'), ({'tau': 0}, 'tau must be a finite number > 0'),
                     ({'mask_hidden': [0]}, 'every width in mask_hidden must be a whole number ≥ 1'),
                     ({'batch': True}, 'batch must be a whole number'), ({'margin': -0.1}, 'margin must be a finite number ≥ 0')):
    test_fail(lambda: carma_hparams('loan', **bad), contains=message)
test_eq(carma_hparams('loan', epochs=300.0)['epochs'], 300)                     # a float without a fraction is a whole number


# %% [markdown]
# ## The two networks
#
# Plain ReLU MLPs with Xavier-uniform weights (ReLU gain) and biases 0.01, as in the original code.
# `CARMA` holds both networks **and** the frozen flow and classifier they were trained with, so a saved
# CARMA model is everything a deployment needs.

# %%
#| export
def binary_gumbel_st(diff: torch.Tensor, # (…) logit of "intervene" minus logit of "keep"
                     tau: float, # temperature τ
                     u: torch.Tensor | None = None, # uniform(0, 1) draws shaped like diff (default: fresh ones)
                    ) -> torch.Tensor:
    "Straight-through hard Gumbel-softmax sample of the 'intervene' class of a two-class categorical."
    # for two classes, the difference of two Gumbel variables is Logistic(0, 1): one uniform draw per feature
    u = (torch.rand_like(diff) if u is None else u).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((diff + torch.log(u) - torch.log1p(-u)) / tau)
    return (soft > 0.5).to(diff.dtype) - soft.detach() + soft

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
    "Mask and action networks over a frozen causal model (the flow, or VACA in chapter 10) and classifier."
    def __init__(self,
                 causal_model: nn.Module, # abduct(x) → (n, D·d_z) latents; latent_counterfactual(z, a, δ) → x_cf
                 clf: Classifier, # the frozen classifier h
                 hp: dict, # hyperparameters (carma_hparams)
                 z_range: tuple[float, float], # clamp range of the latent shift
                ):
        super().__init__()
        if causal_model.scm != clf.scm: raise ValueError(f"the causal model is for {causal_model.scm!r} but the classifier for {clf.scm!r}")
        scm = get_scm(causal_model.scm)
        D, dz = scm.n_features, causal_model.latent_size
        self.scm, self.hp, self.names = scm.name, dict(hp), scm.names
        self.causal_model, self.clf = causal_model, clf
        self.mask_net = mlp([D * dz, *hp['mask_hidden'], 2 * D])
        self.action_net = mlp([D * dz + D, *hp['action_hidden'], D * dz])
        act = torch.zeros(D); act[scm.actionable] = 1.
        self.register_buffer('actionable', act)
        self.register_buffer('z_range', torch.tensor(z_range, dtype=torch.float32))
        self.register_buffer('feature_range', torch.full((2, D), torch.nan, dtype=torch.float64))   # min, max

    @property
    def n_features(self): return len(self.names)
    @property
    def flow(self): return self.causal_model

    def policy(self, z: torch.Tensor, # (n, D·d_z) factual latents
               sample: bool = False, # True: straight-through hard Gumbel-softmax (training); False: argmax
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        "Mask a (n, D) in {0,1}, clamped latent shift δ (n, D·d_z), and the mask logits (n, D, 2)."
        logits = self.mask_net(z).unflatten(-1, (self.n_features, 2))     # [..., 0] keep, [..., 1] intervene
        if sample: a = binary_gumbel_st(logits[..., 1] - logits[..., 0], self.hp['tau'])
        else: a = (logits[..., 1] > logits[..., 0]).to(z.dtype)
        a = a * self.actionable
        delta = self.action_net(torch.cat([z, a], -1)).clamp(float(self.z_range[0]), float(self.z_range[1]))
        return a, delta, logits

    def __repr__(self):
        return (f"CARMA({self.scm!r}, mask {list(self.hp['mask_hidden'])}, action {list(self.hp['action_hidden'])}, "
                f"{type(self.causal_model).__name__} {list(self.causal_model.hidden)}, classifier {list(self.clf.hidden) or 'logistic'})")


# %%
net = mlp([7, 16, 14])
test_eq([type(l).__name__ for l in net], ['Linear', 'ReLU', 'Linear'])
test_eq(net[0].bias.detach(), torch.full((16,), 0.01))
test_eq(carma_hparams('loan')['action_hidden'], (32, 32, 32))
test_eq(carma_hparams('loan', 'weighted')['lr'], 1e-3)           # the weighted-loan row of Table 5
test_eq(carma_hparams('loan', 'vaca')['action_hidden'], (64, 64, 64, 64))
test_fail(lambda: carma_hparams('loan', 'fancy'), contains="variant must be")
test_eq(carma_hparams('loan', epochs=10)['epochs'], 10)
test_fail(lambda: carma_hparams('loan', learning_rate=1), contains='unknown CARMA hyperparameters')
test_fail(lambda: carma_hparams('loan', tau=0), contains='tau must be a finite number > 0')
test_fail(lambda: carma_hparams('loan', shift_scale=0), contains='shift_scale must be a finite number > 0')
test_eq((carma_hparams('loan')['shift_scale'], carma_hparams('chain-nlin')['shift_scale']), (1.0, 2))
# the binary straight-through sample: P(intervene) = σ(logit difference) at any τ, hard 0/1 values, soft gradients
d = torch.full((200_000,), 0.8, requires_grad=True)
s_ = binary_gumbel_st(d, tau=0.3)
test_close(float(s_.mean()), float(torch.sigmoid(torch.tensor(0.8))), eps=0.01)
test_eq(set(s_.detach().unique().tolist()), {0., 1.})
s_.sum().backward(); assert d.grad.abs().sum() > 0
CARMA(fit_flow('loan', verbose=False), train_classifier('loan', verbose=False), carma_hparams('loan'), (-4., 4.))   # untrained, for its shape


# %% [markdown]
# ## Recommending
#
# One forward pass for a whole batch of people: abduct their latents, run the policy, decode the
# counterfactual through the flow. The recommended values are the counterfactual values of the
# intervened features. People the classifier already accepts need nothing: they get an empty action
# and `accepted=True`, not an error.
#
# **Idle acts.** The mask network decides *which* features to act on, the action network *by how
# much*. Nothing stops the first from choosing a feature the second then leaves alone: with the flat
# prior π = ½ neither the mask term nor the cost cares about a feature whose latent shift is zero, so
# the mask network may sit at a coin flip for it, and the argmax of 0.52 against 0.48 is an act. In the
# latent-shift form an act with δ_j = 0 is no act at all (the feature follows its parents, as it would
# have), yet the recommendation would list it, with the value the feature takes anyway. `idle_acts`
# finds such acts: those whose latent shift is smaller than `tol` (in units of the standard-normal
# latent; for VACA, the norm of the node's four latents). `recommend(x, idle_tol=...)` drops them,
# keeping the other acts' shifts, for each person whose counterfactual stays accepted (or gets no less
# likely); everyone else keeps the full action. The default, `idle_tol=None`, serves every act, as the
# paper does. How many idle acts there are, and what dropping them changes, is measured on loan below.

# %%
#| export
def _check_idle_tol(tol):
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"idle_tol must be a number ≥ 0 (a latent shift size such as 0.05; 0 drops nothing), got {tol!r}")

def _idle(model: CARMA, mask: torch.Tensor, delta: torch.Tensor, tol: float) -> torch.Tensor:
    "The acts of `mask` (n, D) whose latent shift is below `tol`: one latent per node (flow), four (VACA)."
    return mask.bool() & (delta.unflatten(-1, (model.n_features, -1)).norm(dim=-1) < tol)

def idle_acts(model: CARMA, # a trained CARMA (flow or VACA as causal model)
              x: torch.Tensor, # (n, D) raw features
              tol: float = 0.05, # an act is idle when its latent shift is smaller than this
             ) -> tuple[torch.Tensor, torch.Tensor]:
    "The served mask (n, D) bool, and which of its acts are idle (latent shift below `tol`), (n, D) bool."
    x = as_features(x, model.n_features, 'x', model.names, dtype=torch.float32)
    _check_idle_tol(tol)
    with torch.inference_mode():
        a, delta, _ = model.policy(model.causal_model.abduct(x))
        mask = a.bool() & (model.clf.predict_proba(x, check=False) < 0.5)[:, None]
        return mask, _idle(model, mask, delta, tol)

def _drop_idle(model: CARMA, z, a, delta, x_cf, prob, tol):
    "Mask, counterfactual and probability with the idle acts dropped, for each person who stays accepted (or no less likely)."
    idle = _idle(model, a, delta, tol)
    kept = a * ~idle
    x_kept = model.causal_model.latent_counterfactual(z, kept, delta)
    p_kept = model.clf.predict_proba(x_kept, check=False)
    use = idle.any(1) & ((p_kept >= 0.5) | (p_kept >= prob))
    return torch.where(use[:, None], kept, a), torch.where(use[:, None], x_kept, x_cf), torch.where(use, p_kept, prob)


# %%
#| export
def _recommend(self: CARMA, x: torch.Tensor, idle_tol: float | None = None) -> Recommendation:
    "Recommendations for raw features x (n, D) in one forward pass (idle acts dropped if `idle_tol`)."
    x = as_features(x, self.n_features, 'x', self.names, dtype=torch.float32)   # the networks are float32
    with torch.inference_mode():
        accepted = self.clf.predict_proba(x, check=False) >= 0.5
        z = self.causal_model.abduct(x)
        a, delta, _ = self.policy(z)
        a = a * ~accepted[:, None]
        x_cf = torch.where(accepted[:, None], x, self.causal_model.latent_counterfactual(z, a, delta))
        prob = self.clf.predict_proba(x_cf, check=False)
        if idle_tol: a, x_cf, prob = _drop_idle(self, z, a, delta, x_cf, prob, idle_tol)
        mask = a.bool()
        return Recommendation(mask, torch.where(mask, x_cf, x), x_cf, prob, torch.ones_like(accepted), accepted)

CARMA.recommend = _recommend

# %% [markdown]
# ### Serving one person at a time
#
# For a handful of people, torch's per-operation overhead (a few microseconds for each of the ~60
# small operations above) dominates the arithmetic. `NumpyPolicy` replays exactly the same
# computation — classifier, abduction, policy, the flow's inverse sweeps — on NumPy arrays of the
# frozen weights, which costs a fraction of that per operation. It also starts the inverse sweeps from
# the person's own features rather than from zeros: then only the descendants of the acted-on features
# move, and 1 + (the longest path below an acted-on feature) sweeps are exact — often one or two
# instead of the graph depth + 1. `recommend` uses it automatically for
# batches of up to `SMALL_BATCH` people when the causal model is the flow (a masked-MLP conditioner);
# larger batches, and VACA, take the torch path. The test checks both paths give the same answers.

# %%
#| export
SMALL_BATCH = 64   # recommend() takes the NumPy path up to this many people (flow models)

def _np_mlp(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in seq if isinstance(m, nn.Linear)]

def _np_relu_mlp(h, layers):
    for k, (w, b) in enumerate(layers):
        h = h @ w + b
        if k < len(layers) - 1: h = np.maximum(h, 0)
    return h

class NumpyPolicy:
    "A frozen CARMA model (flow as causal model) evaluated in NumPy: the same results as `recommend`, less overhead per call."
    def __init__(self, model: CARMA):
        cm, clf = model.causal_model, model.clf
        if not hasattr(cm, '_layers') or getattr(cm, 'latent_size', 1) != 1:
            raise TypeError(f"the NumPy path needs a causal flow (masked-MLP conditioner); got {type(cm).__name__}")
        f32 = lambda t: t.detach().float().numpy().copy()
        self.D, self.height = model.n_features, cm.height.numpy().copy()
        self.clf = (_np_mlp(clf.net), f32(clf.mean), f32(clf.std))
        self.flow = ([(f32(w).T.copy(), f32(b)) for w, b in cm._layers(torch.float32)], f32(cm.mean), f32(cm.std))
        self.mask_net, self.action_net = _np_mlp(model.mask_net), _np_mlp(model.action_net)
        w, b = self.mask_net[-1]                    # only "intervene" minus "keep" matters: one output per feature
        self.mask_net[-1] = (w[:, 1::2] - w[:, 0::2], b[1::2] - b[0::2])
        self.actionable = f32(model.actionable)
        self.lo, self.hi = (float(v) for v in model.z_range)
        self.log_slope = abs(math.log(1e-3))

    def prob(self, x):
        layers, mean, std = self.clf
        return np.exp(-np.logaddexp(0, -_np_relu_mlp((x - mean) / std, layers)[:, 0]))   # σ, without overflow

    def _conditioner(self, z):
        layers = self.flow[0]
        h = z
        for k, (w, b) in enumerate(layers):
            h = h @ w + b
            if k < len(layers) - 1: h = np.maximum(h, 0) + np.expm1(np.minimum(h, 0))   # ELU in three ufuncs
        h = h.reshape(len(z), self.D, 2)
        a = h[..., 1]
        return h[..., 0], a / (1 + np.abs(a) / self.log_slope)

    def recommend(self, x: np.ndarray):
        "(mask, values, x_cf, prob, accepted) as NumPy arrays for raw features x (n, D) float32."
        _, fmean, fstd = self.flow
        accepted = self.prob(x) >= 0.5
        z = (x - fmean) / fstd
        b, s = self._conditioner(z)
        u = z * np.exp(s) + b
        a = (_np_relu_mlp(u, self.mask_net) > 0).astype(np.float32) * self.actionable * ~accepted[:, None]
        delta = np.minimum(np.maximum(_np_relu_mlp(np.concatenate([u, a], 1), self.action_net), self.lo), self.hi)   # np.clip, without its wrapper
        u_cf, zc = u + a * delta, z                 # start from the factual: only the acted nodes' descendants move
        acted = a.any(0)
        for _ in range(1 + int(self.height[acted].max()) if acted.any() else 0):   # 1 + the longest path below an acted node
            b, s = self._conditioner(zc)
            zc = (u_cf - b) * np.exp(-s)
        x_cf = np.where(accepted[:, None], x, zc * fstd + fmean)
        mask = a.astype(bool)
        return mask, np.where(mask, x_cf, x), x_cf, self.prob(x_cf), accepted

def _recommend_dispatch(self: CARMA, x,
                        idle_tol: float | None = None, # drop acts whose latent shift is below this (`idle_acts`); None keeps every act (the paper)
                       ) -> Recommendation:
    "Recommendations for raw features x (n, D): the NumPy path for small batches with a flow, torch otherwise (and when dropping idle acts)."
    if idle_tol is not None: _check_idle_tol(idle_tol)
    small = (isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 2 and x.shape[1] == self.n_features
             and len(x) <= SMALL_BATCH and not x.requires_grad)
    xn = x.numpy() if small else None
    if not (small and np.isfinite(xn).all()):     # anything unusual gets the full checks (and their error messages)
        x = as_features(x, self.n_features, 'x', self.names, dtype=torch.float32)   # the networks are float32
        small = len(x) <= SMALL_BATCH and x.dtype == torch.float32
        xn = x.numpy() if small else None
    if small and not idle_tol and hasattr(self.causal_model, '_layers') and isinstance(self.clf, Classifier):
        if getattr(self, '_np_policy', None) is None: self._np_policy = NumpyPolicy(self)
        out = self._np_policy.recommend(xn)
        mask, values, x_cf, prob, accepted = (torch.from_numpy(np.ascontiguousarray(o)) for o in out)
        return Recommendation(mask, values, x_cf, prob, torch.ones_like(accepted), accepted)
    return _recommend(self, x, idle_tol)

CARMA.recommend = _recommend_dispatch


# %% [markdown]
# ### Where the model can be trusted
#
# The networks, the flow and the classifier have seen only the people of their training data, and a
# forward pass answers for anybody, however far outside (chapter 5). So a CARMA model records the
# minimum and maximum of each feature over the people of the recourse training split it learnt from, as
# a buffer (`feature_range`) saved with its weights: then a saved model alone can tell which applicants,
# and which of its own counterfactuals, lie in its **domain** — the SCM's kinds and bounds ∩ that range
# widened by `DOMAIN_MARGIN` (chapter 5). `train_carma` records it; a model without one refuses to be
# saved, and a model file without one refuses to load, rather than serving anybody unchecked.

# %%
#| export
def set_training_range(model: CARMA, # a CARMA model
                       x: torch.Tensor, # (n, D) the recourse training people (all of them, unfiltered)
                      ) -> CARMA:
    "Record each feature's minimum and maximum over the training people on `model` (in place); returns it."
    if not isinstance(model, CARMA):
        raise TypeError(f"set_training_range needs a CARMA model, got {type(model).__name__}")
    r = training_range(as_features(x, model.n_features, 'x', model.names))
    with torch.no_grad(): model.feature_range.copy_(r)
    return model

def _domain(self: CARMA, margin: float = DOMAIN_MARGIN, # share of the training range added on each side
           ) -> FeatureDomain:
    "Where the model is trusted (chapter 5): the SCM's kinds and bounds ∩ its training range ± `margin`."
    if not torch.isfinite(self.feature_range).all():
        raise ValueError("this CARMA model has no training range, so its domain is unknown: train it with "
                         "train_carma, or call set_training_range(model, recourse_pool.train.x)")
    return feature_domain(self.scm, self.feature_range, margin)

CARMA.domain = _domain


# %% [markdown]
# ## The loss
#
# Per mini-batch of $B$ people with $p_b = h(x^{CF}_b)$:
#
# - **cost** $C$: the mean cost of chapter 5 (with the preference weights) — cheap actions;
# - **mask prior** $K$: $\sum_{j} \mathrm{KL}(\mathrm{Cat}(\mathrm{softmax}(\text{logits}_j)) \,\|\, \mathrm{Bernoulli}(\pi_j))$
#   over actionable features, averaged over the batch — keeps the mask network from collapsing early
#   ($\pi_j = 0.5$, or $1/(2w_j)$ with the preference prior of chapter 9);
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

def mask_prior(weights: torch.Tensor, # (D,) preference weights w_j ≥ 1
               kind: str = 'uniform', # 'uniform' (π_j = 0.5) or 'preference' (π_j = 1/(2 w_j), chapter 9)
              ) -> torch.Tensor:
    "The mask network's prior probability of intervening on each feature, (D,)."
    if kind not in ('uniform', 'preference'): raise ValueError(f"prior must be 'uniform' or 'preference', got {kind!r}")
    return 1 / (2 * weights) if kind == 'preference' else torch.full_like(weights, 0.5)

def masked_mean(v: torch.Tensor, # (…, B) values
                keep: torch.Tensor | None = None, # (B,) 1 for the entries to average, 0 for padding; None: all
               ) -> torch.Tensor:
    "The mean over the last axis of the entries `keep` marks (all of them without `keep`)."
    return v.mean(-1) if keep is None else (v * keep).sum(-1) / keep.sum()

def validity_penalty(p: torch.Tensor, # (B,) classifier probabilities of the counterfactuals
                     margin: float, # hinge margin ε
                     lam: float | torch.Tensor, # current multiplier λ (one per stacked model: shape p.shape[:-1])
                     keep: torch.Tensor | None = None, # (B,) 1 for real people, 0 for padding (`masked_mean`)
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    "(λ + c·sg(g))·g and the hinge g = mean max(0, 1 + ε − 2p) over the last axis: the damped multiplier term of SPEC §8."
    g = masked_mean(F.relu(1 + margin - 2 * p), keep)
    return (lam + DAMPING * g.detach()) * g, g

def hinge_temperature(clf, x: torch.Tensor, factor: float) -> float:
    "T = max(1, factor · median |logit| of the people x): the classifier temperature the hinge uses while training."
    with torch.no_grad(): return max(1.0, factor * float(clf.logits(x, check=False).abs().median()))

def carma_loss(model: CARMA, problem, xb: torch.Tensor, zb: torch.Tensor, weights: torch.Tensor,
               prior: torch.Tensor, lam: float, temperature: float = 1.0) -> tuple[torch.Tensor, dict]:
    "CARMA's loss on one batch (one model; the stacked trainer computes the same per model), and its parts as floats."
    a, delta, logits = model.policy(zb, sample=True)
    x_cf = model.causal_model.latent_counterfactual(zb, a, delta)
    p = torch.sigmoid(model.clf.logits(x_cf, check=False) / temperature)
    cost = problem.cost(xb, x_cf, a, weights).mean()
    kl = mask_kl(logits, prior, model.actionable).mean()
    penalty, g = validity_penalty(p, model.hp['margin'], lam)
    loss = cost + kl + penalty
    return loss, {'cost': float(cost.detach()), 'kl': float(kl.detach()), 'hinge': float(g.detach()),
                  'valid': float((p >= 0.5).float().mean())}


# %%
x_demo = torch.randn(3, 7)
test_close(mask_kl(torch.zeros(3, 7, 2), torch.full((7,), 0.5), torch.ones(7)), torch.zeros(3), eps=1e-6)  # q = π: no penalty
assert (mask_kl(torch.tensor([[[0., 3.]] * 7]), torch.full((7,), 0.5), torch.ones(7)) > 0).all()
# the hinge: zero once every p ≥ (1+ε)/2; the damped term is (λ + c·g)·g, per model when p is (S, B)
pen, g_ = validity_penalty(torch.tensor([[0.9, 0.6], [0.2, 0.9]]), 0.1, torch.tensor([0., 2.]))
test_close(g_, torch.tensor([0., 0.35]))                                      # model 2: max(0, 1.1 − 0.4) / 2
test_close(pen, torch.tensor([0., (2 + DAMPING * 0.35) * 0.35]))

# %% [markdown]
# ### Our one addition: the hinge sees a tempered classifier
#
# The hinge only pushes through $\partial p / \partial x$. Our classifiers are trained with Adam on
# `SPEC.md`'s deterministic labels and become very confident: the rejected training people of loan have
# logits with a median near −70 (the original code's SGD classifier: −2.8, chapter 3), where
# $p = \sigma(\text{logit})$ and its gradient are zero to machine
# precision. The action network then gets a signal only from the few people near the boundary and
# learns to over-shoot for everyone (at paper settings: valid, but 3–5× the oracle's cost). So in
# training the hinge uses $p_T = \sigma(\text{logit}/T)$ with
# $T = \max(1, \texttt{temperature} \cdot \mathrm{median}\,|\text{logit}|)$ over the rejected training
# people. Dividing a logit by $T > 0$ never changes its sign, so every decision, the validity, the
# coverage and the evaluation are exactly the classifier's; only the gradient is no longer flat.
# `temperature = 0` gives $T = 1$, the paper's loss. The factor is a hyperparameter like the others,
# chosen per SCM on the **validation** people (`tools/sweep_hparam.py`; the status section at the
# end of the chapter gives the measurements).

# %%
_p = make_pools('loan')
_clf = train_classifier('loan', _p.classifier, verbose=False)
_rej = rejected(_clf, _p.recourse.train.x)
print('logit quantiles (5, 50, 95 %) of the rejected loan training people:',
      torch.quantile(_clf.logits(_rej), torch.tensor([.05, .5, .95])).round(decimals=1).tolist())
_T = hinge_temperature(_clf, _rej, TEMPERATURE)
_xs = _p.recourse.test.x
test_eq(torch.sigmoid(_clf.logits(_xs) / _T) >= 0.5, _clf.decide(_xs))       # same decisions at any T
test_eq(hinge_temperature(_clf, _rej, 0.), 1.)                                # 0: the paper's loss


# %% [markdown]
# ### Our second addition: room for large shifts
#
# SPEC §8 clamps the latent shift to $[\lfloor\min Z\rfloor, \lceil\max Z\rceil]$ of the training
# latents — about $[-4, 4]$ for a flow whose base is a standard normal. On chain-nlin that is too tight:
# with the paper's clamp, 0.3–14 % of the test people (8 of 10 seeds above 7 %) end up with an invalid
# action **under the flow itself**, and every one of them acts on $x_3$ alone with its shift pinned at
# the clamp, where the clamp passes no gradient. For seed 0 the oracle helps the same people with $x_3$
# shifts of 7 latent units on average (up to 10.5), and setting their shift to 8 makes all of them valid. `shift_scale` multiplies the clamp range.
# Like the temperature it is a hyperparameter, chosen on the **validation** people
# (`tools/sweep_hparam.py`, status section): 2 for chain-nlin and triangle-nlin, where it raised
# validity, and the paper's 1 elsewhere, where a wider clamp only made actions more expensive.

# %% [markdown]
# ## Training
#
# Trained once per SCM and seed on the rejected people of the recourse training split, with Adam
# (weight decay $5\cdot10^{-4}$), no scheduler, the final epoch's weights. The latents $Z$ are computed
# once; the flow and classifier stay frozen, and gradients pass *through* them to the two networks.
# Per epoch we record the cost, the hinge, $\lambda$ and the share of valid counterfactuals under the
# flow.
#
# **Seeds are trained together.** The paper reports ten seeds per SCM. The networks are tiny, so one
# training step is dominated by per-operation overhead rather than arithmetic; ten models cost about
# as much as one if their weights are stacked and evaluated with batched matrix products. Each seed
# keeps its own initialisation, batch order and Gumbel noise (its own random generator), and the
# models share no parameter. That is not yet enough for stacking to change nothing but the wall-clock
# time, because of floating point. PyTorch's CPU kernels work through a tensor in vector blocks
# (8–16 numbers at a time) and finish its last few numbers one by one, and the two paths can round
# `exp`, `log` or the sigmoid differently in the last bit. Which of a model's numbers land in the
# ragged tail depends on how many models sit in front of it in the stack, so a one-bit difference
# appeared in the last batch of an epoch — and training amplifies it: on chain-lin, with the paper's
# 150 epochs, seed 0 trained alone cost 14.16 (×100) and the same seed trained beside seeds 1–3
# cost 10.98, with 35 of 841 people served another mask. So every batch is padded, per model, to a
# multiple of `ALIGN` = 64 people with copies that weigh zero in every mean (`aligned`,
# `masked_mean`): each model's numbers then fill whole vector blocks wherever it sits in the stack.
# Adam runs one tensor at a time (its fused kernel has the same ragged-tail rounding). The result is
# bitwise: the test below trains a seed alone and inside a stack, at the profile's full epochs on
# two SCMs, and compares every weight for equality (`tools/stack_independence.py` repeats it on all
# seven SCMs at the paper's settings).
#
# **Our third addition: restarts.** Some training runs settle in a poor mask — for example, on chain-lin
# a run that acts on $x_2$ and $x_3$ for most people where $x_1$ alone, whose effect on $x_2$ and $x_3$ is
# free, would do; on triangle-lin a run that leaves 15 % of the people pinned at the clamp. Such runs
# are easy to spot on the *training* people: their cost is higher, or their validity under the flow
# lower. So each seed trains `restarts` candidates (three by default; 1 is the paper's procedure),
# stacked like the seeds, and keeps the one with the lowest cost + (1 − validity under the flow) on
# its training people, with deterministic masks. No validation or test person is involved, and a
# model's time includes its discarded restarts. Measured on the validation people (10 seeds, paper
# settings, `tools/sweep_hparam.py … restarts 1,3`), cost / oracle went from 1.45× to 1.13× on
# triangle-lin (where one seed left 17.5 % invalid, and now none), from 1.21× to 1.15× on chain-lin,
# from 1.56× to 1.14× on collider-nlin and from 1.39× to 1.30× on triangle-nlin. On some SCMs a bad
# candidate is common enough that three are too few (trained alone, all three candidates of
# triangle-lin's seed 3 cost 1.40–1.65× the oracle on the test people, and two of seed 8's three,
# while the training score ranked them as the test people do), so we compared three with six where
# the seeds varied most (`tools/sweep_hparam.py … restarts 3,6`, 10 seeds, validation people):
#
# | SCM | restarts 3 | 6 | kept |
# |---|---|---|---|
# | triangle-lin | 1.13× (seed 8: 17.3 against the oracle's 8.8) | 0.97× (every seed 0.86–1.07×) | 6 |
# | chain-lin | 1.15× (seed 7: 15.4 against 8.4) | 1.01× (0.93–1.09×) | 6 |
# | collider-nlin | 1.14× (two seeds at 1.40× and 1.45×) | 1.06× (0.96–1.18×) | 6 |
# | triangle-nlin | 1.30× | 1.26× (1.19–1.33×) | 6 |
#
# (validity 99.7–100 % on every seed in all of these runs.) Six wins the selection score everywhere;
# on triangle-nlin it barely moves the cost, whose gap to the oracle is in every seed, not a few bad
# ones. Collider-lin and chain-nlin keep three: their seeds already agree. Loan trains one since
# polishing was added (below).
#
# **Our fourth addition: polishing the amounts.** Even with six restarts, triangle-nlin stayed 1.2–1.3×
# above the oracle in every seed. Two diagnostics located the gap (validation people, seeds 0–3):
#
# - *Not the flow.* `tools/carma_true_scm.py … --set polish_epochs=0` trains CARMA with the true SCM itself as the causal model
#   (its structural equations behind the same `abduct` / `latent_counterfactual` interface as the flow).
#   It costs 1.24× the oracle, as much as with the flow (1.23×), at 100 % validity.
# - *Overshoot.* The median classifier probability of CARMA's counterfactuals was 0.80 (seed 0), where the
#   cheapest valid action stops just above 0.5. The masks are Gumbel samples during training and
#   deterministic at evaluation, so the action network learned amounts that hedge against masks it will
#   never be served with.
#
# So after the main training each model freezes its mask network at the deterministic masks it will
# serve and trains the action network alone for `polish_epochs` more epochs: the same loss without the
# KL term (which no longer depends on anything being trained), learning rate `POLISH_LR` = 10⁻⁴, the
# multiplier λ continuing from where it was. Restarts are scored after polishing. Measured on the
# validation people (4 seeds, `tools/sweep_hparam.py … polish_epochs 0,150`), cost / oracle, validity:
#
# | SCM | polish_epochs 0 | 150 |
# |---|---|---|
# | triangle-lin | 1.00×, 100 % | 0.89×, 99.91–100 % |
# | collider-lin | 1.08×, 99.91–100 % | 1.02×, 100 % |
# | chain-lin | 1.00×, 99.77–100 % | 0.93×, 99.95–100 % |
# | triangle-nlin | 1.23×, 99.95–100 % | 1.13×, 99.9–100 % |
# | collider-nlin | 1.07×, 99.95–100 % | 0.77×, 99.86 % |
# | chain-nlin | 0.70×, 100 % | 0.49×, 99.91–100 % |
# | loan (then with three restarts) | 0.91×, 99.87–100 % | 0.71×, 99.91–100 % |
#
# It wins the selection score on every SCM, so every SCM keeps 150 (300 epochs gave triangle-nlin only
# 1.12×, and a learning rate of 3·10⁻⁴ 1.12× as well). The weighted row of loan polishes too since a
# later check (below, mask refinement); the VACA row was not re-tuned and trains without it. With
# polishing, loan's restarts no longer pay for themselves: on the validation people (10 seeds) three
# candidates cost 0.716× the oracle and one 0.727× (validity ≥ 99.79 % on every seed either way), but three take 2.7× the training time, and loan's training time is what a
# service retrains. So loan trains one candidate, as in the paper. Polishing adds to the training time
# (loan, one candidate: 1.3× the paper's procedure, `benchmarks/bench_carma.py`). What remains on
# triangle-nlin is the mask: CARMA acts on $x_2$ and $x_3$ for 56 % of the people, where the oracle acts
# on $x_1$ alone for 54 %, and 93 % of CARMA's excess cost over the oracle comes from people whose mask
# differs from the oracle's (seed 0, before polishing).

# %%
#| export
class StackedMLP(nn.Module):
    "S independent ReLU MLPs with `mlp`'s architecture and init, evaluated by batched matmuls: (S, n, i) → (S, n, o)."
    def __init__(self, sizes: list[int], generators: list[torch.Generator]):
        super().__init__()
        gain = nn.init.calculate_gain('relu')
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = gain * math.sqrt(6 / (a + b))                       # Xavier-uniform, as nn.init.xavier_uniform_
            self.weights.append(nn.Parameter(torch.stack([(torch.rand(a, b, generator=g) * 2 - 1) * bound for g in generators])))
            self.biases.append(nn.Parameter(torch.full((len(generators), 1, b), 0.01)))

    def forward(self, h):
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1: h = F.relu(h)
        return h

    def member(self, s: int, prefix: str) -> dict:
        "The state dict of member `s` as an `mlp` (nn.Sequential) under `prefix`."
        return {**{f'{prefix}.{2 * k}.weight': w[s].detach().T.contiguous() for k, w in enumerate(self.weights)},
                **{f'{prefix}.{2 * k}.bias': b[s, 0].detach().clone() for k, b in enumerate(self.biases)}}

ALIGN = 64   # each model's people are padded to a multiple of this many, so its results never depend on its stack

def aligned(n: int, # people in a batch (or in the whole training set)
           ) -> tuple[torch.Tensor, torch.Tensor]:
    "Positions (n_pad,) that pad n people to a multiple of `ALIGN` by repeating the first ones, and `keep` (n_pad,): 1 on the real ones."
    if isinstance(n, bool) or not isinstance(n, int) or n < 1: raise ValueError(f"n must be a whole number ≥ 1, got {n!r}")
    pos = torch.arange(-(-n // ALIGN) * ALIGN)
    return pos % n, (pos < n).float()

def stacked_training(step, # step(idx (S, b) person indices, lam (S,), keep (b,)) → (loss (S,), parts (4, S): cost, kl, hinge, valid)
                     params, # the stacked parameters
                     n_people: int, # people in the training set
                     gens: list[torch.Generator], # one generator per model: its batch order
                     hp: dict, # lr, epochs, batch
                     desc: str, verbose: bool = True,
                     lam0: torch.Tensor | None = None, # starting multipliers (S,); default zeros
                    ) -> dict:
    "The loop shared by every stacked trainer: per-model batch orders, Adam, one multiplier λ per model; per-epoch curves (epochs, S)."
    S = len(gens)
    # one tensor at a time: the fused and multi-tensor kernels round a model's last weights differently in another stack
    opt = torch.optim.Adam(params, lr=hp['lr'], weight_decay=WEIGHT_DECAY, foreach=False, fused=False)
    lam = torch.zeros(S) if lam0 is None else lam0.clone()
    curves = {k: [] for k in ('cost', 'kl', 'hinge', 'lambda', 'valid')}
    for _ in progress(range(hp['epochs']), desc=f'{desc} ×{S}', disable=None if verbose else True):
        sums = torch.zeros(4, S)
        perms = torch.stack([torch.randperm(n_people, generator=g) for g in gens])
        for k in range(0, n_people, hp['batch']):
            idx = perms[:, k:k + hp['batch']]
            pos, keep = aligned(idx.shape[1])                                    # pad the batch; padding weighs 0
            loss, parts = step(idx[:, pos], lam, keep)
            opt.zero_grad(set_to_none=True); loss.sum().backward(); opt.step()   # the models share no parameter
            lam = (lam + parts[2]).clamp_(min=0)                                  # λ ← max(0, λ + g), per model
            sums += parts * idx.shape[1]
        for k, v in zip(('cost', 'kl', 'hinge', 'valid'), sums / n_people): curves[k].append(v)
        curves['lambda'].append(lam.clone())
    return {k: torch.stack(v) for k, v in curves.items()}

def cached_stack(kind: str, # model-cache folder
                 cfgs: list[dict], # one full configuration per seed
                 fit_missing, # fit_missing(indices) → [(state_dict, scaler, extras)] for those configurations, trained together
                 cache: bool = True) -> list[Checkpoint]:
    "One checkpoint per config: the cached ones loaded, the missing ones trained at once under their locks."
    if cache: return cached_checkpoints(kind, cfgs, fit_missing)   # which are missing: asked under the locks
    return [Checkpoint(f[0], c, None, None, f[2]) for c, f in zip(cfgs, fit_missing(list(range(len(cfgs)))))]

def restart_seed(seed: int, r: int) -> int:
    "The random seed of restart r of `seed`: restart 0 is the seed itself, so restarts=1 is plain training."
    return seed if r == 0 else seed + 7919 * r + 1_000_003

def served_masks(mask_net: StackedMLP, z: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    "The deterministic masks (S, N, D) each of the S stacked mask networks serves for latents z (N, D·d_z)."
    S = mask_net.weights[0].shape[0]
    logits = mask_net(z.expand(S, *z.shape)).unflatten(-1, (len(act), 2))
    return (logits[..., 1] > logits[..., 0]).to(z.dtype) * act

def stacked_outcome(action_net: StackedMLP, cm, clf, problem, xb, zb, a, lo, hi, w, per_person: bool = False,
                    keep: torch.Tensor | None = None, # (b,) the real people of a padded batch (`aligned`)
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    "Classifier logits (S, b) of the counterfactuals of S stacked action networks under masks a (S, b, D), and their mean cost (S,) (per person (S, b) with `per_person`)."
    S, b = a.shape[:2]
    delta = action_net(torch.cat([zb, a], -1)).clamp(lo, hi)
    x_cf = cm.latent_counterfactual(zb.flatten(0, 1), a.flatten(0, 1), delta.flatten(0, 1))
    cost = problem.cost(xb.flatten(0, 1), x_cf, a.flatten(0, 1), w).view(S, b)
    return clf.logits(x_cf, check=False).view(S, b), cost if per_person else masked_mean(cost, keep)

def restart_scores(mask_net: StackedMLP, action_net: StackedMLP, cm, clf, problem, x, z, act, lo, hi, w
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    "Per stacked model (S,): mean cost + share of people left invalid under the causal model (deterministic masks, all people x), and the coverage."
    pos, keep = aligned(len(x))
    x, z = x[pos], z[pos]
    with torch.no_grad():
        a = served_masks(mask_net, z, act)
        logits, cost = stacked_outcome(action_net, cm, clf, problem, x.expand(len(a), *x.shape), z.expand(len(a), *z.shape), a, lo, hi, w,
                                       keep=keep)
        coverage = masked_mean((logits >= 0).float(), keep)
        return cost + (1 - coverage), coverage

@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_carma_seeds(scm, cm, clf, pool, hp, weights, prior_kind, seeds, verbose):
    "Train one CARMA per seed, all at once: each seed (and each of its restarts) has its own init, batch order and Gumbel noise."
    t0 = time.perf_counter()
    R, n_seeds = int(hp.get('restarts', 1)), len(seeds)
    seeds = [restart_seed(s, r) for s in seeds for r in range(R)]         # seed-major: model k is seed k // R, restart k % R
    problem = recourse_problem(scm, pool, weights)
    with torch.no_grad():
        x = rejected(clf, pool.train.x)
        z = cm.abduct(x)
    lo, hi = (hp['shift_scale'] * v for v in (math.floor(float(z.min())), math.ceil(float(z.max()))))
    T = hinge_temperature(clf, x, hp['temperature'])
    S, N, D, dz = len(seeds), len(x), scm.n_features, cm.latent_size
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    mask_net = StackedMLP([D * dz, *hp['mask_hidden'], 2 * D], gens)
    action_net = StackedMLP([D * dz + D, *hp['action_hidden'], D * dz], gens)
    act = torch.zeros(D); act[scm.actionable] = 1.
    w = problem.weights
    prior = mask_prior(w, prior_kind)
    def step(idx, lam, keep):
        xb, zb, b = x[idx], z[idx], idx.shape[1]                                 # (S, b, D), (S, b, D·d_z)
        logits = mask_net(zb).unflatten(-1, (D, 2))
        u = torch.stack([torch.rand(b, D, generator=g) for g in gens])
        a = binary_gumbel_st(logits[..., 1] - logits[..., 0], hp['tau'], u) * act
        lg, cost = stacked_outcome(action_net, cm, clf, problem, xb, zb, a, lo, hi, w, keep=keep)
        p = torch.sigmoid(lg / T)
        kl = masked_mean(mask_kl(logits, prior, act), keep)
        penalty, g = validity_penalty(p, hp['margin'], lam, keep)
        return cost + kl + penalty, torch.stack([cost, kl, g, masked_mean((p >= 0.5).float(), keep)]).detach()
    curves = stacked_training(step, [*mask_net.parameters(), *action_net.parameters()], N, gens, hp, f'CARMA {scm.name}', verbose)
    if hp.get('refine_epochs'):   # our fifth addition (below): every mask's amounts, then each person's cheapest valid mask
        curves = refine_masks(mask_net, action_net, cm, clf, problem, x, z, act, lo, hi, w, prior, T, hp, gens, curves, f'CARMA {scm.name}', verbose)
    P = int(hp.get('polish_epochs', 0))
    if P:   # our fourth addition: the masks frozen at their deterministic choice, the action network alone refines the amounts
        with torch.no_grad(): a_det = served_masks(mask_net, z, act)              # (S, N, D)
        rows = torch.arange(S)[:, None]
        def polish_step(idx, lam, keep):
            lg, cost = stacked_outcome(action_net, cm, clf, problem, x[idx], z[idx], a_det[rows, idx], lo, hi, w, keep=keep)
            p = torch.sigmoid(lg / T)
            penalty, g = validity_penalty(p, hp['margin'], lam, keep)
            return cost + penalty, torch.stack([cost, torch.zeros_like(cost), g, masked_mean((p >= 0.5).float(), keep)]).detach()
        more = stacked_training(polish_step, list(action_net.parameters()), N, gens,
                                {'lr': hp.get('polish_lr', POLISH_LR), 'epochs': P, 'batch': hp['batch']},
                                f'CARMA {scm.name} polish', verbose, lam0=curves['lambda'][-1])
        curves = {k: torch.cat([v, more[k]]) for k, v in curves.items()}
    feature_range = training_range(pool.train.x)                        # the model's domain (chapter 5), saved with it
    scores, coverage = (v.view(n_seeds, R) for v in restart_scores(mask_net, action_net, cm, clf, problem, x, z, act, lo, hi, w))
    seconds = (time.perf_counter() - t0) / n_seeds
    out = []
    for i in range(n_seeds):
        r = int(scores[i].argmin())                                         # the restart with the best training score
        s = i * R + r
        sd = {**mask_net.member(s, 'mask_net'), **action_net.member(s, 'action_net'),
              'actionable': act.clone(), 'z_range': torch.tensor([lo, hi], dtype=torch.float32),
              'feature_range': feature_range}
        extras = {f'history_{k}': v[:, s].clone() for k, v in curves.items()}
        out.append((sd, None, {**extras, 'train_seconds': torch.tensor(seconds), 'stacked_seeds': torch.tensor(S),
                               'temperature_T': torch.tensor(T), 'restart_scores': scores[i].clone(),
                               'train_coverage': coverage[i, r].clone()}))
    return out

def _carma_setup(scm, clf, flow, pool, hparams, profile, weights, prior, variant):
    "Validated inputs and the cache configuration (without the seed) of a CARMA training run."
    scm = get_scm(scm)
    for what, m in (('classifier', clf), ('causal model', flow)):
        if m.scm != scm.name: raise ValueError(f"the {what} was trained for {m.scm!r}, not {scm.name!r}")
    mask_prior(torch.ones(1), prior)                                             # validates `prior`
    pool = resolve_pool(scm, pool, 'recourse')
    if variant is None and weights is not None: variant = 'weighted'
    hp = carma_hparams(scm, variant, **(hparams or {}))
    for k in ('epochs', 'refine_epochs', 'polish_epochs'):                       # the profile scales every phase (unless given)
        if hp.get(k) and k not in (hparams or {}):
            hp[k] = max(1, round(hp[k] * get_profile(profile).carma_epoch_frac))
    hp = {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()}
    w = as_weights(scm, weights)
    cfg = {'kind': 'carma', 'trainer': TRAINER_VERSION, 'carma_trainer': 'stacked-3', 'scm': scm.name, 'hp': hp,
           'prior': prior, 'weights': w.tolist(), 'train': split_id(pool.train),
           'causal_model': getattr(flow, 'config', None), 'classifier': getattr(clf, 'config', None)}
    return scm, pool, hp, w, cfg

def train_carma_seeds(scm: SCM | str, # the SCM
                      clf: Classifier, # its frozen classifier
                      flow, # its fitted causal model: the CausalFlow (or a VACA, chapter 10)
                      pool: Pool | Pools | None = None, # the recourse pool (default: make_pools(scm).recourse)
                      seeds=(0,), # one model per seed; the missing ones are trained together
                      hparams: dict | None = None, # overrides of the paper's hyperparameters (carma_hparams)
                      profile: str | Profile | None = None, # scales the epochs (paper: as in SPEC §8)
                      weights=None, # preference weights (chapter 9)
                      prior: str = 'uniform', # mask prior: 'uniform' (π = 0.5) or 'preference' (π = 1/(2w))
                      variant: str | None = None, # Table 5 row: None, 'weighted' (default when weights are given) or 'vaca'
                      cache: bool = True, verbose: bool = True) -> list[CARMA]:
    "CARMA models for several seeds (SPEC §8): cached ones are loaded, the others trained at once as a stack."
    seeds = check_seeds(seeds)
    cks = _carma_checkpoints(scm, clf, flow, pool, seeds, hparams, profile, weights, prior, variant, cache, verbose)
    models = [_carma_from_checkpoint(ck, flow, clf) for ck in cks]
    for s, m in zip(seeds, models): _warn_collapse(m, s)
    return models

COLLAPSED = 0.5   # a model whose counterfactuals help fewer of its own training people than this has failed to train

class TrainingCollapsed(UserWarning):
    "A trained model that helps too few of its own training people (see `COLLAPSED`)."

def _warn_collapse(model: CARMA, seed: int):
    "Warn, naming the seed and what to try, when a model's coverage on its own training people is below `COLLAPSED`."
    cov = model.history.get('train_coverage')
    if cov is not None and float(cov) < COLLAPSED:
        warnings.warn(f"CARMA {model.scm} seed {seed}: its recommendations help only {100 * float(cov):.1f} % of its own "
                      f"training people (under the causal model it trained with; below {100 * COLLAPSED:.0f} %): training "
                      f"failed. Check the hyperparameters (lr={model.hp['lr']:g}, epochs={model.hp['epochs']}) — "
                      "a smaller learning rate or more epochs usually helps", TrainingCollapsed, stacklevel=3)

def _carma_checkpoints(scm, clf, flow, pool, seeds, hparams, profile, weights, prior, variant, cache, verbose) -> list[Checkpoint]:
    "The checkpoints (trained weights as saved) behind `train_carma_seeds`, same arguments."
    seeds = check_seeds(seeds)
    scm, pool, hp, w, base = _carma_setup(scm, clf, flow, pool, hparams, profile, weights, prior, variant)
    cfgs = [{**base, 'seed': s} for s in seeds]
    fit = lambda todo: _fit_carma_seeds(scm, flow, clf, pool, hp, w, prior, [seeds[i] for i in todo], verbose)
    return cached_stack('carma', cfgs, fit, cache)

def train_carma(scm: SCM | str, clf: Classifier, flow, pool: Pool | Pools | None = None, hparams: dict | None = None,
                profile: str | Profile | None = None, seed: int = 0, weights=None, prior: str = 'uniform',
                variant: str | None = None, cache: bool = True, verbose: bool = True) -> CARMA:
    "Train (or fetch from the cache) CARMA's mask and action networks for `scm` and one seed (see `train_carma_seeds`)."
    return train_carma_seeds(scm, clf, flow, pool, [seed], hparams, profile, weights, prior, variant, cache, verbose)[0]

def flush_subnormal_(module: nn.Module) -> int:
    "Set the subnormal entries (0 < |w| < the dtype's smallest normal, 1.18e-38 in float32) of `module`'s float parameters to zero, in place; returns how many."
    if not isinstance(module, nn.Module): raise TypeError(f"flush_subnormal_ needs a torch nn.Module (e.g. model.action_net), got {type(module).__name__}")
    n = 0
    with torch.no_grad():
        for p in module.parameters():   # a handful of tensors, once per load
            if not p.is_floating_point(): continue
            sub = (p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)
            n += int(sub.sum())
            p.masked_fill_(sub, 0.0)
    return n

_FROZEN = ('causal_model.', 'clf.')   # a CARMA's tensors that belong to its causal model and classifier

def _carma_from_checkpoint(ck: Checkpoint, cm, clf: Classifier, flush: bool = True) -> CARMA:
    cfg, source = ck.config, ck.path or 'a CARMA checkpoint'
    own = {k: v for k, v in ck.state_dict.items() if not k.startswith(_FROZEN)}
    z_range = own.get('z_range')
    if not (isinstance(z_range, torch.Tensor) and z_range.shape == (2,) and torch.isfinite(z_range).all()):
        raise ValueError(f"{source}: no valid 'z_range' tensor (the clamp range of the latent shift); train or save the model again")
    model = CARMA(cm, clf, cfg['hp'], tuple(z_range.tolist()))
    load_weights(model, own, source, skip=_FROZEN)   # every tensor present, shaped and finite; copies: ck keeps its own
    if flush: flush_subnormal_(model.mask_net); flush_subnormal_(model.action_net)   # weight decay leaves dead weights subnormal: slow on some CPUs
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

# %%
gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
stack = StackedMLP([7, 16, 14], gens)
single = mlp([7, 16, 14]); single.load_state_dict({k.removeprefix('m.'): v for k, v in stack.member(1, 'm').items()})
h_in = torch.randn(2, 9, 7)
test_close(stack(h_in)[1], single(h_in[1]), eps=1e-6)                 # member 1 of the stack is an ordinary mlp
hp_small = {'epochs': 3, 'polish_epochs': 2}   # short runs that still exercise every phase
def same_model(a: CARMA, b: CARMA):
    "Every weight of two CARMA models bitwise equal."
    for k, v in a.state_dict().items(): assert torch.equal(b.state_dict()[k], v), k
alone = train_carma('loan', clf, flow, pools.recourse, hparams=hp_small, seed=4, cache=False, verbose=False)
both = train_carma_seeds('loan', clf, flow, pools.recourse, seeds=[3, 4], hparams=hp_small, cache=False, verbose=False)
same_model(alone, both[1])
test_fail(lambda: train_carma_seeds('loan', clf, flow, seeds=[1, 1]), contains='seeds must be distinct')
test_fail(lambda: train_carma('loan', clf, flow, seed=-1), contains='must be a whole number ≥ 0, got -1')
# a model that learned to help (almost) nobody says so: lr = 10⁴ wrecks the networks in a few steps
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    wrecked = train_carma('loan', clf, flow, pools.recourse, hparams={'lr': 1e4, 'epochs': 3, 'restarts': 1, 'polish_epochs': 0},
                          cache=False, verbose=False)
assert float(wrecked.history['train_coverage']) < COLLAPSED
assert any(issubclass(w.category, TrainingCollapsed) and 'training failed' in str(w.message) for w in caught)
assert float(carma.history['train_coverage']) >= COLLAPSED                           # the model of this chapter is fine
# restarts: the kept candidate is the one with the best training score, and it is the model its restart seed trains alone
two = train_carma('loan', clf, flow, pools.recourse, hparams={**hp_small, 'restarts': 2}, seed=4, cache=False, verbose=False)
sc = two.history['restart_scores']; r_best = int(sc.argmin())
test_eq(len(sc), 2); test_eq(restart_seed(4, 0), 4)
one = train_carma('loan', clf, flow, pools.recourse, hparams={**hp_small, 'restarts': 1}, seed=restart_seed(4, r_best), cache=False, verbose=False)
for k, v in one.state_dict().items():
    if k.startswith(('mask_net', 'action_net')): test_close(two.state_dict()[k], v, eps=1e-5)
test_fail(lambda: carma_hparams('loan', restarts=1.5), contains='restarts must be a whole number ≥ 1')
# polishing (our fourth addition): the mask network is untouched, the action network moves, the curves gain the polish epochs
plain = train_carma('loan', clf, flow, pools.recourse, hparams={**hp_small, 'restarts': 1, 'polish_epochs': 0}, seed=4, cache=False, verbose=False)
polished = train_carma('loan', clf, flow, pools.recourse, hparams={**hp_small, 'restarts': 1}, seed=4, cache=False, verbose=False)
for k, v in plain.state_dict().items():
    if k.startswith('mask_net'): test_close(polished.state_dict()[k], v, eps=1e-6)
assert any(not torch.allclose(polished.state_dict()[k], v) for k, v in plain.state_dict().items() if k.startswith('action_net'))
test_eq(len(plain.history['cost']), 3); test_eq(len(polished.history['cost']), 3 + 2)
test_eq(float(polished.history['lambda'][3]) >= float(plain.history['lambda'][2]) - 1e-6, True)   # λ continues, not reset
test_fail(lambda: carma_hparams('loan', polish_epochs=-1), contains='polish_epochs must be a whole number ≥ 0')
test_fail(lambda: carma_hparams('loan', polish_lr=0), contains='polish_lr must be a finite number > 0')

# %% [markdown]
# **A stack is trained once, even by two processes.** Two notebooks under `nbdev_test`, or two workers
# of `carma-nb reproduce` (chapter 12), often share one model cache and want the same seeds. If
# `cached_stack` asked which seeds are missing *before* taking any lock, both would find them all
# missing, and both would train the whole stack, one after the other. So it hands the whole question to
# chapter 0's `cached_checkpoints`: take the locks of the missing seeds (in one fixed order, so two
# overlapping stacks cannot deadlock), ask again which are missing, train only those. Below, two threads
# ask for overlapping stacks at once, with a stand-in for training: each seed is trained once.
# (`tests/test_carma.py` checks the same with two processes training a real CARMA stack.)

# %%
import os, threading
with tempfile.TemporaryDirectory() as d:
    saved_cache, os.environ['CARMA_CACHE'] = os.environ.get('CARMA_CACHE'), d
    try:
        fitted = []
        def fake_fit(seeds):
            def fit(todo):
                fitted.extend(seeds[i] for i in todo); time.sleep(0.2)
                return [({'w': torch.zeros(1)}, None, {}) for _ in todo]
            return fit
        ask = lambda seeds: cached_stack('demo', [{'seed': s} for s in seeds], fake_fit(seeds))
        threads = [threading.Thread(target=ask, args=(seeds,)) for seeds in ([0, 1], [2, 1])]
        for t in threads: t.start()
        for t in threads: t.join()
        test_eq(sorted(fitted), [0, 1, 2])
    finally:
        if saved_cache is None: os.environ.pop('CARMA_CACHE')
        else: os.environ['CARMA_CACHE'] = saved_cache


# %% [markdown]
# **Our fifth addition: refining the masks.** Polishing trims the amounts but leaves every
# person's choice of features where the main training put it, and on triangle-nlin that choice is the gap:
# the oracle acts on $x_1$ alone for 54 % of the validation people, CARMA on $x_2$ and $x_3$ for 56 %. The
# mask network learns its choice only through the straight-through gradient of the masks it happens to
# sample, and the action network is trained only on those masks, so a mask the network rarely samples
# gets poor amounts and stays unchosen. A direct check (seed 0): serving each validation person the
# cheapest of the 7 masks whose counterfactual under the flow is valid, with the amounts the trained
# action network already gives for each, would cost 0.93× the oracle instead of 1.23× (one candidate, no restarts).
#
# So `refine_epochs` > 0 adds three steps between the main training and polishing, all on the training
# people and the flow alone:
#
# 1. *Every mask's amounts.* The action network alone trains for `refine_epochs` epochs on masks drawn
#    uniformly from all $2^K - 1$ non-empty subsets of the $K$ actionable features (cost + hinge, λ held at
#    its end-of-training value: some masks can never be made valid, and their hinge would inflate λ).
# 2. *Labels.* For every person, every one of those masks is tried with the action network's amounts (one
#    batched pass per mask, over all people and stacked models), and the cheapest whose counterfactual the
#    classifier accepts under the flow becomes the person's label (no valid mask: the served one stays).
# 3. *The mask network learns the labels* (binary cross-entropy per actionable feature, `refine_epochs`
#    epochs). Polishing then fits the amounts to the masks it now serves.
#
# Serving is unchanged: one forward pass, no search. The enumeration is a training-time cost ($2^K - 1$ = 7
# masks here, 15 for loan). The people who now act on $x_1$ alone rely on the flow to carry the change to
# $x_2$ and $x_3$, and the flow's counterfactuals on triangle-nlin are its least accurate (chapter 4), so
# causal validity fell unless the hinge margin grew with it. Measured on the validation people (4 seeds,
# six restarts, polished, `tools/sweep_hparam.py triangle-nlin margin … --set refine_epochs=…`), cost /
# oracle, causal validity range, score (cost + 1 − validity):
#
# | triangle-nlin | cost / oracle | validity | score |
# |---|---|---|---|
# | no refinement, margin 0.003 (before; an earlier session's run) | 1.13× | 99.9–100 % | ≈ 0.05 (estimated from those two) |
# | no refinement, margin 0.03 (the margin alone) | 1.184× | 99.9–100 % | 0.0523 |
# | refine 300, margin 0.01 | 0.858× | 98.52–99.48 % | 0.0467 |
# | refine 150, margin 0.02 | 0.884× | 97.24–99.90 % | 0.0475 |
# | refine 300, margin 0.02 | 0.877× | 99.19–99.76 % | 0.0429 |
# | **refine 300, margin 0.03** (kept) | 0.884× | 99.52–100 % | **0.0408** |
# | refine 300, margin 0.04 | 0.916× | 99.71–100 % | 0.0416 |
#
# Triangle-nlin keeps refinement (300 epochs) with the margin 0.03. The same comparison on other SCMs,
# at their own margins (validation people, 4 seeds, refine_epochs 0 vs 300):
#
# | SCM | cost / oracle | validity | score | kept |
# |---|---|---|---|---|
# | triangle-lin | 0.895× → 0.771× | 99.87–100 → 99.91–99.96 % | 0.0795 → 0.0688 | refine |
# | collider-lin | 1.035× → 0.897× | 100 % → 100 % | 0.0841 → 0.0730 | refine |
# | chain-lin | 0.917× → 0.785× | 100 % → 100 % | 0.0770 → 0.0660 | refine |
# | collider-nlin | 0.787× → 0.770× | 99.77–99.95 → 99.68–99.95 % | 0.0240 → 0.0240 | plain (a tie) |
#
# Chain-nlin was not tried (0.50× the oracle on the test people without it). On loan it lost: 0.668×
# the oracle but validity 99.23–99.79 % (score 0.0322, against about 0.030 estimated from the earlier
# 4-seed run without it), so loan keeps the plain row.
# For the weighted row (chapter 9) the labels include the mask prior's term,
# $-\sum_j \log \mathrm{Bernoulli}(a_j; \pi_j)$ (`mask_penalty`, zero for the uniform prior): with the
# preference prior it sends every person to savings alone, 1.14× the weighted oracle's weighted cost
# (score 0.0705, against 0.0686 without refinement), so that row does not refine. Polishing alone won
# there (0.914× the weighted oracle, score 0.0638), so the weighted row now polishes.

# %%
#| export
def mask_subsets(act: torch.Tensor, # (D,) 1 on actionable features
                ) -> torch.Tensor:
    "Every non-empty subset of the actionable features as a mask, (2^K − 1, D) for K actionable features."
    idx = act.nonzero().flatten()
    K = len(idx)
    if not 1 <= K <= 10: raise ValueError(f"mask refinement enumerates the 2^K − 1 masks of K actionable features and needs 1 ≤ K ≤ 10, got K = {K}")
    bits = (torch.arange(1, 2 ** K)[:, None] >> torch.arange(K)) & 1
    out = torch.zeros(2 ** K - 1, len(act))
    out[:, idx] = bits.to(out.dtype)
    return out

def mask_penalty(cands: torch.Tensor, # (M, D) candidate masks
                 prior: torch.Tensor, # (D,) prior probability of intervening π_j
                 act: torch.Tensor, # (D,) 1 on actionable features
                ) -> torch.Tensor:
    "The mask term of CARMA's loss at each deterministic mask, −Σ_actionable log Bernoulli(a_j; π_j), less its minimum: (M,), all 0 when every π_j = ½."
    logp = torch.where(cands.bool(), torch.log(prior), torch.log1p(-prior)) * act
    pen = -logp.sum(-1)
    return pen - pen.min()

def cheapest_valid_masks(action_net: StackedMLP, cm, clf, problem, x, z, # x (N, D) people, z (N, D·d_z) their latents
                         cands: torch.Tensor, # (M, D) candidate masks
                         lo, hi, w,
                         fallback: torch.Tensor, # (S, N, D) the mask kept where no candidate is valid
                         penalty: torch.Tensor | None = None, # (M,) added to each mask's cost (mask_penalty); default none
                        ) -> torch.Tensor:
    "Per stacked model and person, the valid candidate mask (accepted under cm, amounts from action_net) of least cost + penalty."
    S, N = fallback.shape[:2]
    penalty = torch.zeros(len(cands)) if penalty is None else penalty
    pos, _ = aligned(N)                     # padded like a training batch; the padding is cut off at the end
    xs, zs = x[pos].expand(S, len(pos), -1), z[pos].expand(S, len(pos), -1)
    best_cost, best = torch.full((S, len(pos)), torch.inf), fallback[:, pos].clone()
    with torch.no_grad():
        for m, pen in zip(cands, penalty):   # one pass per mask (at most 15 here), each batched over all models and people
            logits, cost = stacked_outcome(action_net, cm, clf, problem, xs, zs, m.expand(S, len(pos), -1), lo, hi, w, per_person=True)
            cost = cost + pen
            better = (logits >= 0) & (cost < best_cost)   # ties keep the earlier, smaller mask
            best_cost = torch.where(better, cost, best_cost)
            best = torch.where(better[..., None], m, best)
    return best[:, :N]

def refine_masks(mask_net: StackedMLP, action_net: StackedMLP, cm, clf, problem, x, z, act, lo, hi, w,
                 prior: torch.Tensor, # (D,) the mask prior π_j
                 T: float, # the hinge's classifier temperature
                 hp: dict, gens: list[torch.Generator],
                 curves: dict, # the main training's curves; the every-mask phase is appended
                 desc: str, verbose: bool = True) -> dict:
    "Our fifth addition: the action network learns every mask's amounts, each person is labelled with the cheapest valid mask, the mask network learns the labels."
    S, D = len(gens), len(act)
    E, lr = int(hp['refine_epochs']), hp.get('refine_lr', hp['lr'])
    cands = mask_subsets(act)
    lam = curves['lambda'][-1]     # held fixed in this phase: some masks can never be made valid and would inflate it
    zero = torch.zeros(S)
    def every_mask_step(idx, _, keep):
        a = cands[torch.stack([torch.randint(len(cands), (idx.shape[1],), generator=g) for g in gens])]   # uniform over the masks
        lg, cost = stacked_outcome(action_net, cm, clf, problem, x[idx], z[idx], a, lo, hi, w, keep=keep)
        p = torch.sigmoid(lg / T)
        penalty, g = validity_penalty(p, hp['margin'], lam, keep)
        return cost + penalty, torch.stack([cost, zero, zero, masked_mean((p >= 0.5).float(), keep)]).detach()
    more = stacked_training(every_mask_step, list(action_net.parameters()), len(x), gens, {'lr': lr, 'epochs': E, 'batch': hp['batch']},
                            f'{desc} every mask', verbose, lam0=lam)
    with torch.no_grad(): labels = cheapest_valid_masks(action_net, cm, clf, problem, x, z, cands, lo, hi, w, served_masks(mask_net, z, act),
                                                        mask_penalty(cands, prior, act))
    rows = torch.arange(S)[:, None]
    def label_step(idx, _, keep):
        d = mask_net(z[idx]).unflatten(-1, (D, 2)).diff(dim=-1).squeeze(-1)       # logit of "intervene" minus "keep"
        bce = masked_mean((F.binary_cross_entropy_with_logits(d, labels[rows, idx], reduction='none') * act).sum(-1), keep)
        return bce, torch.stack([bce, zero, zero, zero]).detach()
    stacked_training(label_step, list(mask_net.parameters()), len(x), gens, {'lr': lr, 'epochs': E, 'batch': hp['batch']},
                     f'{desc} mask labels', verbose, lam0=lam)
    return {k: torch.cat([v, more[k]]) for k, v in curves.items()}


# %%
act_loan = torch.tensor([0., 0, 1, 1, 0, 1, 1])
ms = mask_subsets(act_loan)
test_eq(ms.shape, (15, 7)); test_eq(len({tuple(r) for r in ms.tolist()}), 15)
test_eq(ms[:, [0, 1, 4]].abs().sum(), 0); test_eq(bool((ms.sum(-1) >= 1).all()), True)
test_fail(lambda: mask_subsets(torch.zeros(4)), contains='needs 1 ≤ K ≤ 10')
test_eq(mask_penalty(ms, torch.full((7,), 0.5), act_loan), torch.zeros(15))          # the uniform prior favours no mask
pen = mask_penalty(ms, mask_prior(torch.tensor([1., 1, 3, 2, 1, 2, 1]), 'preference'), act_loan)
test_eq(int(pen.argmin()), int((ms == torch.tensor([0., 0, 0, 0, 0, 0, 1])).all(-1).float().argmax()))   # savings alone (π = ½) is free
test_close(float(pen.max()), math.log(5) + 2 * math.log(3), eps=1e-5)                 # all four: education's odds 1:5, loan amount's and income's 1:3
# the batched search against a plain loop over people and masks (the teaching reference)
prob_l, x_l = recourse_problem('loan', pools.recourse), rejected(clf, pools.recourse.train.x)[:40]
z_l = flow.abduct(x_l)
nets = StackedMLP([7 + 7, 16, 7], [torch.Generator().manual_seed(s) for s in (1, 2)])
fb = torch.zeros(2, len(x_l), 7)
fast = cheapest_valid_masks(nets, flow, clf, prob_l, x_l, z_l, ms, -3., 3., prob_l.weights, fb)
with torch.no_grad():
    for s in range(2):
        for i in range(len(x_l)):
            best, best_c = fb[s, i], float('inf')
            for m in ms:
                d = nets(torch.cat([z_l[i:i + 1], m[None]], -1)[None].expand(2, 1, -1))[s].clamp(-3., 3.)
                xc = flow.latent_counterfactual(z_l[i:i + 1], m[None], d)
                c = float(prob_l.cost(x_l[i:i + 1], xc, m[None], prob_l.weights))
                if float(clf.logits(xc, check=False)) >= 0 and c < best_c: best, best_c = m, c
            test_eq(fast[s, i], best)
# a short run with refinement: three phases in the curves, the mask network moved, bad settings refused
refined = train_carma('loan', clf, flow, pools.recourse, hparams={**hp_small, 'restarts': 1, 'refine_epochs': 2}, seed=4, cache=False, verbose=False)
test_eq(len(refined.history['cost']), 3 + 2 + 2)
assert any(not torch.allclose(refined.state_dict()[k], v) for k, v in polished.state_dict().items() if k.startswith('mask_net'))
test_fail(lambda: carma_hparams('loan', refine_epochs=1.5), contains='refine_epochs must be a whole number ≥ 0')
test_fail(lambda: carma_hparams('loan', refine_lr=-1), contains='refine_lr must be a finite number > 0')

# %% [markdown]
# With every phase defined, the promise of "Seeds are trained together" can be checked in full: a seed
# trained alone and the same seed trained inside a stack of three (in the middle of it) are the same
# model, bit for bit, at the profile's full epochs, with every phase their rows use (restarts, mask
# refinement, polishing) — on two SCMs.

# %%
for name in ('chain-lin', 'collider-lin'):
    p_ = make_pools(name)
    c_ = train_classifier(name, p_.classifier, profile, verbose=False)
    f_ = fit_flow(name, p_.causal, profile, verbose=False)
    one_seed = train_carma_seeds(name, c_, f_, p_.recourse, [1], profile=profile, cache=False, verbose=False)[0]
    stacked = train_carma_seeds(name, c_, f_, p_.recourse, [5, 1, 2], profile=profile, cache=False, verbose=False)[1]
    same_model(one_seed, stacked)

# %% [markdown]
# The training curves tell the story of the multiplier: early on many counterfactuals are invalid,
# the hinge is large and $\lambda$ climbs; as validity reaches 100 % the hinge vanishes, $\lambda$ stops
# growing, and the cost term is free to shrink the actions. Right of the dashed line is polishing: the
# masks are now the deterministic ones, no longer Gumbel samples, so the cost drops at once, and the
# action network alone trims the amounts it no longer needs to hedge.

# %%
h = carma.history
fig, axes = plt.subplots(1, 4, figsize=(15, 2.8))
for ax, k, t in zip(axes, ('cost', 'hinge', 'lambda', 'valid'), ('cost (SPEC §6 units)', 'validity hinge g', 'multiplier λ', 'valid under the flow')):
    ax.plot(h[k].numpy()); ax.set_title(t, fontsize=10); ax.set_xlabel('epoch')
    E, Rf, P = carma.hp['epochs'], carma.hp.get('refine_epochs', 0), carma.hp.get('polish_epochs', 0)
    for start, used in ((E, Rf), (E + Rf, P)):   # where refinement and polishing start
        if used: ax.axvline(start - 0.5, color='grey', ls='--', lw=1)
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
# The NumPy path and the torch path agree, person by person:

# %%
many = rejected(clf, pools.recourse.test.x)[:2000]
r_torch = _recommend(carma, many)
fast = NumpyPolicy(carma).recommend(many.numpy())
test_eq(torch.from_numpy(fast[0]), r_torch.mask)
test_close(torch.from_numpy(fast[1]), r_torch.values, eps=1e-3)
test_close(torch.from_numpy(fast[3]), r_torch.prob, eps=1e-4)
test_eq(carma.recommend(many[:5]).mask, r_torch.mask[:5])                    # recommend() dispatches small batches to NumPy
test_eq(carma.recommend(many[:5].double()).mask, r_torch.mask[:5])           # float64 input (either path) is served in float32
test_eq(carma.recommend(many[:100].double()).mask, r_torch.mask[:100])
test_eq(carma.recommend(many[0].tolist()).mask, r_torch.mask[:1])             # one row, as a plain list
test_fail(lambda: carma.recommend(torch.full((2, 7), float('nan'))), contains='NaN')   # the fast check falls back to the full one


# %% [markdown]
# ### Saving and loading
#
# A CARMA checkpoint holds the two networks, the frozen flow and the classifier (each with its
# scaler), the training range of each feature (the model's domain) and the configuration: everything
# `carma-nb recommend` needs to serve applicants.

# %%
#| export
def save_carma(model: CARMA, path) -> Path:
    "Save CARMA with its causal model and classifier (weights, scalers, configs) in one checkpoint."
    model.domain()                                   # refuses a model without a training range, with the fix
    cm = model.causal_model
    cfg = {'kind': 'carma-model', 'scm': model.scm, 'hp': model.hp,
           'causal_class': f'{type(cm).__module__}.{type(cm).__qualname__}', 'causal_hidden': list(cm.hidden),
           'clf_hidden': list(model.clf.hidden), 'train_config': getattr(model, 'config', None)}
    return save_checkpoint(path, model.state_dict(), cfg)

#: The causal models a saved CARMA may name: this package's own classes, by exact name (an allow-list).
CAUSAL_MODELS = ('carma_nb.flow.CausalFlow', 'carma_nb.vaca.VACA')

def _causal_class(name: str, source) -> type:
    "The causal-model class a checkpoint names, if it is one of `CAUSAL_MODELS`."
    if name not in CAUSAL_MODELS:
        raise ValueError(f"{source} names causal model class {name!r}; only {', '.join(CAUSAL_MODELS)} can be loaded")
    module, _, cls = name.rpartition('.')
    return getattr(importlib.import_module(module), cls)

def _frozen_part(cls, sd: dict, prefix: str, cfg: dict, hidden_key: str, source):
    "The causal model or classifier stored under `prefix` in a saved CARMA, checked tensor by tensor and frozen."
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not {'mean', 'std'} <= set(part): raise ValueError(f"{source}: the {prefix[:-1]}'s scaler (mean, std) is missing; save the model again")
    model = cls(cfg['scm'], tuple(cfg[hidden_key]), StandardScaler(part['mean'], part['std']))
    return load_weights(model, part, f'{source} ({prefix[:-1]})').freeze()

def _require_training_range(sd: dict, path) -> None:
    "Refuse a model file without the training range a service checks applicants against."
    r, D = sd.get('feature_range'), len(sd.get('actionable', ()))
    if not isinstance(r, torch.Tensor) or r.shape != (2, D) or not torch.isfinite(r).all():
        raise ValueError(f"model file {path} has no feature_range (each feature's training minimum and "
                         "maximum), so its domain is unknown and applicants could not be checked (a file "
                         "saved before models recorded it, or a damaged one): train the model again and "
                         "save it with save_carma")

def load_carma(path, scm: str | None = None) -> CARMA:
    "Load a saved CARMA model (causal model and classifier included); with `scm`, refuse one of another SCM."
    ck = load_checkpoint(path, expect={'kind': 'carma-model', **({'scm': get_scm(scm).name} if scm else {})})
    cfg, sd = ck.config, ck.state_dict
    _require_training_range(sd, path)
    lacking = [k for k in ('scm', 'hp', 'causal_class', 'causal_hidden', 'clf_hidden') if k not in cfg]
    if lacking: raise ValueError(f"{path}: the saved configuration lacks {lacking}; save the model again with save_carma")
    cm = _frozen_part(_causal_class(cfg['causal_class'], path), sd, 'causal_model.', cfg, 'causal_hidden', path)
    clf = _frozen_part(Classifier, sd, 'clf.', cfg, 'clf_hidden', path)
    return _carma_from_checkpoint(Checkpoint(sd, cfg.get('train_config') or {'hp': cfg['hp']}, None, Path(path)), cm, clf)


# %%
with tempfile.TemporaryDirectory() as d:
    path = save_carma(carma, Path(d)/'carma.pt')
    again = load_carma(path, scm='loan')
    test_eq(again.recommend(train_people).values, rec.values)
    test_fail(lambda: load_carma(path, scm='chain-lin'), contains="has scm='loan' but scm='chain-lin' was requested")
    # a damaged file is refused, naming the file and the tensor: one weight missing, one NaN, a foreign class
    ck = load_checkpoint(path)
    def damaged(edit_sd=lambda sd: sd, edit_cfg=lambda c: c):
        save_checkpoint(Path(d)/'bad.pt', edit_sd(dict(ck.state_dict)), edit_cfg(dict(ck.config)))
        return lambda: load_carma(Path(d)/'bad.pt')
    test_fail(damaged(lambda sd: {k: v for k, v in sd.items() if k != 'action_net.2.weight'}),
              contains="bad.pt: missing tensors ['action_net.2.weight']")
    test_fail(damaged(lambda sd: {**sd, 'mask_net.0.bias': sd['mask_net.0.bias'] * float('nan')}),
              contains="'mask_net.0.bias' holds NaN")
    test_fail(damaged(lambda sd: {k: v for k, v in sd.items() if k != 'clf.net.0.weight'}), contains='bad.pt (clf): missing')
    test_fail(damaged(edit_cfg=lambda c: {**c, 'causal_class': 'os.system'}), contains="only carma_nb.flow.CausalFlow")
    test_fail(damaged(edit_cfg=lambda c: {**c, 'causal_class': 'carma_nb.core.Path'}), contains="only carma_nb.flow.CausalFlow")
    test_eq(again.feature_range, training_range(pools.recourse.train.x))   # the domain travels with the model
    payload = torch.load(path, weights_only=True); del payload['state_dict']['feature_range']
    torch.save(payload, Path(d)/'old.pt')                                   # as saved before models had it
    test_fail(lambda: load_carma(Path(d)/'old.pt'), contains='has no feature_range')
    untrained = CARMA(carma.flow, carma.clf, carma.hp, tuple(carma.z_range.tolist()))
    test_fail(lambda: save_carma(untrained, Path(d)/'u.pt'), contains='call set_training_range(model')
    test_eq(set_training_range(untrained, pools.recourse.train.x).domain().low, carma.domain().low)

# %% [markdown]
# ## CARMA against the oracle on loan
#
# The test people the classifier rejects, served by CARMA (one forward pass) and by the oracle
# (exhaustive search with the true SCM), evaluated by the same function. CARMA's coverage is measured
# under the flow, its causal validity by replaying its recommended values in the true SCM.

# %%
test_people = rejected(clf, pools.recourse.test.x, profile.oracle_people)
rec = carma.recommend(test_people)
rep = evaluate_recourse(problem, clf, test_people, rec)
orc = cached_oracle(problem, clf, test_people)
orep = evaluate_recourse(problem, clf, test_people, orc)
pd.DataFrame([rep.metrics, orep.metrics], index=['CARMA', 'oracle']).round(3)

# %% [markdown]
# ### Idle acts on loan
#
# How many of those acts are idle (latent shift below 0.05), per feature, and what the table above
# becomes when `recommend(..., idle_tol=0.05)` drops them:

# %%
served, idle = idle_acts(carma, test_people)
rec_drop = carma.recommend(test_people, idle_tol=0.05)
rep_drop = evaluate_recourse(problem, clf, test_people, rec_drop)
act_names = [get_scm('loan').names[j] for j in get_scm('loan').actionable]
with torch.no_grad():
    _, delta_t, logits_t = carma.policy(flow.abduct(test_people))
p_act = torch.softmax(logits_t.double(), -1)[..., 1]                          # the mask network's probability of acting
median_among = lambda v, m: torch.where(m, v, torch.nan).nanmedian(0).values    # per feature, over the people where m (NaN if none)
display(pd.DataFrame({'acting %': 100 * served.double().mean(0), 'idle %': 100 * idle.double().mean(0),
                      'median p(act), idle acts': median_among(p_act, idle), 'median p(act), other acts': median_among(p_act, served & ~idle),
                      'median |latent shift|, idle acts': median_among(delta_t.abs().double(), idle)},
                     index=get_scm('loan').names).loc[act_names].round(3))
pd.DataFrame([rep.metrics, rep_drop.metrics], index=['CARMA', 'CARMA, idle acts dropped']).round(3).T

# %%
test_eq(served, rec.mask)                                                     # idle_acts sees the served mask
assert not (rec_drop.mask & ~rec.mask).any() and not (rec.mask & ~rec_drop.mask & ~idle).any()   # it only drops idle acts
test_eq(carma.recommend(test_people[:5], idle_tol=0.05).mask, rec_drop.mask[:5])   # a small batch drops the same (torch path)
test_eq(carma.recommend(test_people, idle_tol=0).mask, rec.mask)             # 0 drops nothing
test_eq(carma.recommend(ok, idle_tol=0.05).mask.any(), torch.tensor(False))   # accepted people still get nothing
assert rep_drop.metrics['validity %'] >= rep.metrics['validity %'] - 0.5 and rep_drop.metrics['cost x100'] <= 1.01 * rep.metrics['cost x100']
test_fail(lambda: carma.recommend(test_people, idle_tol=-0.1), contains='idle_tol must be a number ≥ 0')
test_fail(lambda: idle_acts(carma, test_people, tol=float('nan')), contains='idle_tol must be a number ≥ 0')
test_fail(lambda: idle_acts(carma, test_people[:, :3]), contains='3 columns but 7 features')

# %% [markdown]
# **Measured** (paper profile, the 2 311 rejected loan test people, the chapter's model):
# of CARMA's 3.74 acts per person, 1.01 are idle: almost all its education acts (94.5 % of people, of
# the 97.1 % it asks to act on education), and a few of income (1.8 %) and savings (5.1 %). The mask
# network is at a coin flip on them, as described above: its median probability of acting is 0.515 on
# the idle education acts, against 0.59–0.66 on the loan-amount, income and savings acts that change
# something; and their median latent shift is 0.009 (education) and 0.023 (income, savings).
# Dropping them leaves 2.73 acts per person, near the paper's 2.89 for loan, while the cost moves from
# 3.023 to 3.017 and coverage (99.91 %) and causal validity (99.96 %) do not move. Table 1 and the study
# tables keep the paper's count (every act the mask network chooses), so they stay comparable with the
# paper; `carma-nb recommend` drops idle acts by default (chapter 12), because telling a person to set
# their education to its current value is not advice. Dropping them takes one more pass through the
# flow and the classifier, reusing the latents and shifts already computed: 2.34 µs per person for the
# whole test set in one batch against 1.56 µs (1.5×), and 0.57 ms for one person on the torch path,
# against 0.34 ms on the torch path without dropping and 0.09 ms on the NumPy path, which serves small
# batches only when nothing is dropped (`benchmarks/bench_carma.py`, rows C–E; one run on this shared
# machine).

# %% [markdown]
# Speed, both ways (`SPEC.md` §6): one person at a time, and the whole test set in one batch.

# %%
timing = time_per_person(lambda xb: carma.recommend(xb), test_people, single=100)
{k: round(v, 4) for k, v in timing.items()}

# %% [markdown]
# One detail matters for that batched time. Weight decay drives the weights of dead units towards zero,
# and after 600 epochs hundreds of them (790–980 in the four loan models we counted) are *subnormal*
# floats, below $1.18 \cdot 10^{-38}$. Some CPUs handle each multiplication by a subnormal in microcode,
# many times slower: on the machine of the latest full re-run the whole-test-set pass of a loan model
# takes 3.78 µs per person with them and 1.56 µs without, 2.4× faster (`benchmarks/bench_carma.py`,
# rows D). Next to any normal number their contribution is
# below float32's resolution, so every model is loaded with them set to zero (`flush_subnormal_`, in
# `_carma_from_checkpoint`), and its recommendations stay bit-identical. The check: a copy with two
# weights made subnormal, saved and loaded again, has them at zero and recommends exactly what the
# copy does.

# %%
import copy
with torch.no_grad():
    raw = copy.deepcopy(carma); raw.mask_net[0].weight[0, 0] = 1e-40; raw.action_net[0].weight[0, 0] = 1e-40
with tempfile.TemporaryDirectory() as d:
    back = load_carma(save_carma(raw, Path(d)/'raw.pt'))             # loading flushes them
test_eq(float(back.mask_net[0].weight[0, 0]), 0.); test_eq(float(back.action_net[0].weight[0, 0]), 0.)
r_raw, r_back = raw.recommend(test_people), back.recommend(test_people)
assert torch.equal(r_raw.mask, r_back.mask) and torch.equal(r_raw.values, r_back.values)   # bit-identical
test_eq(flush_subnormal_(raw.mask_net) + flush_subnormal_(raw.action_net), 2)     # the same two, in place
test_eq(flush_subnormal_(carma.mask_net) + flush_subnormal_(carma.action_net), 0) # a loaded model has none left
test_fail(lambda: flush_subnormal_(carma.state_dict()), contains='needs a torch nn.Module')

# %% [markdown]
# ### Paper Fig. 2 and Fig. 7
#
# How CARMA and the oracle act on loan: the distribution of the shift $x^{CF} - x^F$ of each actionable
# feature among the people who act on it (Fig. 2), and how many features each person acts on and how
# often each feature is chosen (Fig. 7).

# %%
#| export
METHOD_COLORS = {'CARMA': '#1b9e77', 'oracle': '#d95f02', 'DiCE-VAE': '#7570b3', 'CARMA (weighted)': '#e7298a',
                 'oracle (weighted)': '#66a61e', 'CARMA (VACA)': '#e6ab02'}

def plot_shifts(scm: SCM | str, # the SCM whose actionable features get one panel each
                reports: dict, # method name -> RecourseReport (evaluate_recourse)
                title: str = ''):
    "Histograms of the shift x_CF − x_F of each actionable feature among the people who act on it, per method."
    import matplotlib.pyplot as plt
    scm = get_scm(scm)
    fig, axes = plt.subplots(1, len(scm.actionable), figsize=(4 * len(scm.actionable), 3), squeeze=False)
    for ax, j in zip(axes[0], scm.actionable):
        for name, rep in reports.items():
            s = rep.shift[rep.mask[:, j], j].numpy()
            if len(s): ax.hist(s, bins=30, alpha=.6, color=METHOD_COLORS.get(name), label=f'{name} (n={len(s)})', density=True)
        ax.set_title(scm.names[j]); ax.legend(fontsize=8)
    fig.suptitle(title, y=1.05)
    return fig

def plot_feature_use(scm: SCM | str, reports: dict, title: str = ''):
    "Two panels per method: % of people by number of features intervened, and % of people acting on each feature."
    import matplotlib.pyplot as plt
    scm = get_scm(scm)
    colors = [METHOD_COLORS.get(n) for n in reports]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3))
    counts = pd.DataFrame({n: pd.Series(r.mask.sum(1).numpy()).value_counts(normalize=True) * 100 for n, r in reports.items()})
    counts.reindex(range(len(scm.actionable) + 1)).fillna(0).plot.bar(ax=a1, color=colors)
    a1.set_xlabel('number of features intervened'); a1.set_ylabel('% of people')
    pd.DataFrame({n: r.per_feature['intervened %'] for n, r in reports.items()}).plot.bar(ax=a2, color=colors)
    a2.set_ylabel('% of people'); a2.set_xlabel('')
    for ax in (a1, a2): ax.tick_params(axis='x', rotation=0)
    fig.suptitle(title, y=1.03)
    return fig


# %%
fig = plot_shifts('loan', {'CARMA': rep, 'oracle': orep}, 'loan: shift x_CF − x_F of each intervened feature (paper Fig. 2)')
save_figure(fig, 'fig2_shifts_carma_vs_oracle')
plt.show()

# %%
fig = plot_feature_use('loan', {'CARMA': rep, 'oracle': orep}, 'loan: CARMA vs oracle (paper Fig. 7)')
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

def carma_table(profile=None, scms=SCM_NAMES, seed0: int = 0, verbose: bool = False,
                clf_optimizer: str = 'adam', # the classifiers' optimizer (chapter 3): 'adam' (SPEC) or 'sgd' (original code)
                algorithm: str = 'ours', # 'ours' (the settings above) or 'paper' (our additions off: `paper_algorithm`)
               ) -> pd.DataFrame:
    "CARMA (mean ± std over the profile's seeds) and the oracle on every SCM's rejected test people."
    if algorithm not in ('ours', 'paper'): raise ValueError(f"algorithm must be 'ours' or 'paper', got {algorithm!r}")
    p = get_profile(profile)
    rows = []
    for name in scms:
        ref = oracle_reference(name, p, clf_optimizer=clf_optimizer)
        flow = fit_flow(name, ref.pools.causal, p, verbose=False)
        per_seed = []
        hp = paper_algorithm(name) if algorithm == 'paper' else None
        for m in train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, range(seed0, seed0 + p.seeds), hp, profile=p, verbose=verbose):
            r = m.recommend(ref.people)
            idle = float(idle_acts(m, ref.people)[1].sum(1).double().mean())
            per_seed.append({**evaluate_recourse(ref.problem, ref.clf, ref.people, r).metrics, 'idle acts': idle})
        df, o = pd.DataFrame(per_seed), ref.metrics
        rows.append({'scm': name, 'seeds': p.seeds, 'people': len(ref.people),
                     'CARMA cost x100': df['cost x100'].mean(), 'cost std': df['cost x100'].std(),
                     'oracle cost x100': o['cost x100'], 'cost / oracle': df['cost x100'].mean() / o['cost x100'],
                     'CARMA validity %': df['validity %'].mean(), 'validity min %': df['validity %'].min(),
                     'CARMA coverage %': df['coverage %'].mean(), 'CARMA acts': df['acts'].mean(), 'CARMA idle acts': df['idle acts'].mean(), 'oracle acts': o['acts'],
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
test_fail(lambda: carma_table(profile, scms=['loan'], algorithm='table5'), contains="algorithm must be 'ours' or 'paper'")

# %% [markdown]
# **Status of this chapter.** The outputs above come from the **paper** profile (10 seeds per SCM, the
# paper's epochs, every rejected test person), with the models trained by `carma-nb reproduce`.
#
# *What changed on the way.* With the paper's loss unchanged, CARMA was valid but expensive on our
# classifiers (loan: cost 11–38 over ten seeds, 2.7–9.4× the oracle), because the hinge's gradient is zero
# for almost every rejected person (logits around −70). Chapter 13 runs the paper's algorithm
# (`paper_algorithm`: all our additions off) against the classifiers the original code trained (SGD,
# chapter 3), and there it lands near the paper's Table 1 (five of seven SCMs within the paper's
# seed-to-seed spread). So the additions answer our classifiers rather than a flaw in the algorithm.
# The tempered hinge fixes the gradient without
# touching any decision. Its factor was chosen per SCM on the **validation** people by
# `tools/sweep_hparam.py` (4 seeds, paper settings; score = cost + (1 − validity), SPEC §8's rule).
# Measured:
#
# | SCM | factor 0 (the paper's loss) | 1 | 4 | kept |
# |---|---|---|---|---|
# | loan | — (test, 10 seeds: 4.6× the oracle) | 1.12×, 99.9–100 % | 0.93×, 99.8–100 % | 4 |
# | chain-lin | 2.59×, 94.2–100 % | 1.10×, 100 % | 1.15×, 100 % | 1 |
# | collider-lin | 1.92×, 100 % | 2.03×, 92.7–100 % | 1.14×, 99.9–100 % | 4 |
# | triangle-lin | not run | 1.55×, 82.5–100 % | 1.13×, 99.9–100 % | 4 |
# | triangle-nlin | 3.44×, 88.1–100 % | 1.53×, 95.6–98.2 % | 1.80×, 94.9–98.1 % | 1 |
# | collider-nlin | not run | 1.34×, 100 % | 1.21×, 99.0–100 % | 1 |
# | chain-nlin | 16.7×, 89.3–100 % | 1.44×, 86.2–99.9 % | 0.65×, 77.7–91.5 % | 1 |
#
# (cost as a multiple of the oracle's on the same validation people; causal validity range over seeds;
# loan was also tried at 0.5, 2 and 8: 1.45×, 1.11× and 1.02×.)
#
# The clamp scale was chosen the same way (4 seeds, validation people, the temperatures above):
#
# | SCM | shift_scale 1 (the paper's clamp) | 2 | 3 | kept |
# |---|---|---|---|---|
# | chain-nlin | 1.53×, 85.3–98.6 % | 0.91×, 99.8–100 % | 1.74×, 99.96–100 % | 2 |
# | triangle-nlin | 1.67×, 96.6–98.2 % | 1.31×, 98.1–100 % | — | 2 |
# | triangle-lin | 1.27×, 100 % | 1.59×, 99.96–100 % | — | 1 |
# | collider-nlin | 1.25×, 99.95–100 % | 1.30×, 98.7–100 % | — | 1 |
# | chain-lin | 1.10×, 100 % | 1.21×, 89.4–100 % | — | 1 |
#
# *Against the targets* (paper profile, 10 seeds, test people; the table above). Causal validity is
# at least 99.87 % on average on every SCM, and at least 99.61 % on every seed of every SCM (the lowest
# seeds: triangle-nlin 99.61 %, collider-nlin and chain-lin 99.86 %). Cost is below the oracle's on every
# SCM: chain-nlin 0.50×, loan 0.74×, triangle-lin 0.76×, collider-nlin 0.76×, chain-lin 0.78×,
# triangle-nlin 0.88× and collider-lin 0.89×, so within the 1.10× target everywhere, including
# chain-nlin, where the paper was furthest (1.21×). CARMA can beat the oracle because the oracle
# searches a grid of 15–25 values per feature (chapter 6) while CARMA's amounts are continuous;
# polishing lets it use more of that freedom.
# Triangle-nlin was at 1.12× (seeds 1.07–1.16×) with polishing alone; its choice of features was the gap
# (CARMA with the true SCM had the same one: 1.11× against the flow's 1.13× on the validation people,
# `tools/carma_true_scm.py triangle-nlin`). Mask refinement closed it (0.88×, seeds 0.85–0.90×, 1.67
# features per person), and on triangle-lin, collider-lin and chain-lin it moved the test cost from
# 0.92×, 1.03× and 0.92× of the oracle (the same settings without refinement, this machine) to 0.76×,
# 0.89× and 0.78×, with validity unchanged (100 %, 100 % and 99.99 %) and 1.0, 1.9 and 1.0 features per
# person instead of 2.2, 2.9 and 2.7. Speed is measured by
# `benchmarks/bench_carma.py` (RESULTS.md); restarts, refinement and polishing multiply the training
# work, which the stacked training absorbs in part (the runner's time per model, two workers on this
# shared machine, discarded candidates included: loan 16 s, triangle-lin 74 s with refinement against
# 49 s without).
#
# *Features per person.* The table counts every act the mask network chooses, as the paper does; the
# column `CARMA idle acts` counts those among them that change nothing (latent shift below 0.05, as on
# loan above). The SCMs trained with mask refinement have (almost) none: refinement labels each person
# with the cheapest valid mask, which never holds an act it does not need. The others do: loan 1.02 of
# its 3.73, chain-nlin 0.95 of 2.55 and collider-nlin 0.63 of 2.73. Without them CARMA acts on 2.71,
# 1.60 and 2.11 features per person there, against the paper's 2.89, 2.32 and 2.62.

# %%
#| hide
import nbdev; nbdev.nbdev_export()

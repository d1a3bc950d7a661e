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
#   person to their action, trained once on the rejected people of the recourse training split
#   (the paper's §4).
#
# The function has two parts, both fed the person's exogenous latents $Z = T(\tilde x^F)$ from the
# flow (chapter 4's $u$; $d_z$ numbers per feature: 1 for the flow, 4 for VACA in chapter 11):
#
# - a **mask network** $q_\omega(Z)$ decides *which* features to act on: two logits per feature;
#   during training a hard straight-through Gumbel-softmax sample $a_j \in \{0,1\}$ (so the choice is
#   discrete but gradients flow), at evaluation simply $a_j = 1$ iff the "intervene" logit wins.
#   Non-actionable features are forced to $a_j = 0$.
# - an **action network** $f_\phi(Z, a)$ decides *by how much*: a shift $\delta$ of the intervened
#   features' latents, clamped to the range of latents seen in training. The counterfactual is
#   $\tilde x^{CF} = T^{-1}(Z + a \odot \delta)$: the intervened features move, and their descendants
#   follow through the flow.
#
# The recommendation shown to the person is the counterfactual value of each intervened feature,
# $\theta_j = x^{CF}_j$ — which the evaluation replays as a hard intervention in the true SCM.
# This chapter builds the model and how it answers: its hyperparameters, the two networks, serving,
# where a model can be trusted, saving and loading. Chapter 8 trains it (the paper's loss and training
# loop); chapter 9 proposes changes to that training and measures each against it.

# %%
#| export
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from carma_nb.classifier import Classifier
from carma_nb.core import (Checkpoint, as_features, check_positive, check_whole, check_widths,
                           load_checkpoint, load_weights, save_checkpoint)
from carma_nb.data import StandardScaler
from carma_nb.recourse import (DOMAIN_MARGIN, FeatureDomain, Recommendation, feature_domain, shift_limits,
                               training_range)
from carma_nb.scm import SCM, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import tempfile
from carma_nb.classifier import train_classifier
from carma_nb.core import get_profile
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.recourse import outside_domain, rejected

# %% [markdown]
# ## Hyperparameters
#
# The paper tuned CARMA per SCM (its Table 5). The model uses the hidden widths of both networks and the
# Gumbel temperature τ; training (chapter 8) uses the learning rate, epochs, batch size and the margin ε
# of its validity hinge. Loan has two more rows, for preference weights (chapter 10) and for VACA
# (chapter 11). A world of one's own (`register_scm`, chapter 1) has no row: it gets `GENERIC_HPARAMS`,
# a middle-of-the-table setting that trained valid models on two worlds posing as new (≥ 99.9 %, at
# 0.5–1.3× their own row's cost: `studies/generic_hparams.ipynb`), unless it has its own (`carma-nb tune`).

# %%
#| export
CARMA_HPARAMS: dict[str, dict] = {   # the paper's Table 5
    'triangle-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(8, 8, 8, 8),
                          epochs=500, batch=32, margin=0.007, tau=0.55),
    'collider-lin':  dict(lr=5e-3, mask_hidden=(32,), action_hidden=(32, 32, 32, 32),
                          epochs=350, batch=256, margin=0.013, tau=0.31),
    'chain-lin':     dict(lr=5e-3, mask_hidden=(16,), action_hidden=(8, 8),
                          epochs=150, batch=128, margin=0.004, tau=0.87),
    'triangle-nlin': dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(8, 8, 8, 8),
                          epochs=450, batch=256, margin=0.003, tau=0.2),
    'collider-nlin': dict(lr=1e-2, mask_hidden=(16, 16, 16), action_hidden=(8, 8, 8),
                          epochs=250, batch=64, margin=0.002, tau=0.83),
    'chain-nlin':    dict(lr=5e-3, mask_hidden=(32, 32, 32), action_hidden=(32, 32, 32, 32),
                          epochs=250, batch=256, margin=0.007, tau=0.08),
    'loan':          dict(lr=5e-3, mask_hidden=(32, 32), action_hidden=(32, 32, 32),
                          epochs=450, batch=256, margin=0.011, tau=0.45),
    'loan-weighted': dict(lr=1e-3, mask_hidden=(16, 16, 16), action_hidden=(32, 32, 32, 32),
                          epochs=450, batch=256, margin=0.007, tau=0.33),
    'loan-vaca':     dict(lr=5e-4, mask_hidden=(64, 64, 64), action_hidden=(64, 64, 64, 64),
                          epochs=450, batch=256, margin=0.003, tau=0.4),
}
#: For an SCM without a Table-5 row: the table's typical values (its median learning rate and batch,
#: mid-range widths).
GENERIC_HPARAMS = dict(lr=5e-3, mask_hidden=(32, 32), action_hidden=(32, 32, 32), epochs=300, batch=256,
                       margin=0.007, tau=0.5)

def carma_hparams(scm: SCM | str, # an SCM or its name
                  # None, 'weighted' (chapter 10) or 'vaca' (chapter 11): loan's other rows
                  variant: str | None = None,
                  **overrides, # any of the keys, replacing the table's value
                 ) -> dict:
    "CARMA's hyperparameters for `scm`: its Table-5 row (or `GENERIC_HPARAMS`), with overrides, checked."
    name = get_scm(scm).name
    if variant not in (None, 'weighted', 'vaca'):
        raise ValueError(f"variant must be None, 'weighted' or 'vaca', got {variant!r}")
    key = f'{name}-{variant}' if variant else name
    if variant and key not in CARMA_HPARAMS and name in CARMA_HPARAMS: key = f'loan-{variant}'  # loan's rows
    hp = dict(CARMA_HPARAMS.get(key, GENERIC_HPARAMS))
    unknown = set(overrides) - set(hp)
    if unknown: raise ValueError(f"unknown CARMA hyperparameters {sorted(unknown)}; known: {sorted(hp)}")
    hp.update(overrides)
    for k in ('lr', 'tau'): hp[k] = check_positive(hp[k], k)
    hp['margin'] = check_positive(hp['margin'], 'margin', zero=True)
    for k in ('epochs', 'batch'): hp[k] = check_whole(hp[k], k)
    for k in ('mask_hidden', 'action_hidden'): hp[k] = list(check_widths(hp[k], k))
    return hp


# %%
test_eq(carma_hparams('loan')['action_hidden'], [32, 32, 32])
test_eq(carma_hparams('loan', 'weighted')['lr'], 1e-3)           # the weighted-loan row of Table 5
test_eq(carma_hparams('loan', 'vaca')['action_hidden'], [64, 64, 64, 64])
test_eq(carma_hparams('triangle-nlin')['margin'], 0.003)
test_eq(carma_hparams('loan', epochs=300.0)['epochs'], 300)       # a float without a fraction is whole
test_fail(lambda: carma_hparams('loan', 'fancy'), contains="variant must be")
test_fail(lambda: carma_hparams('loan', learning_rate=1), contains='unknown CARMA hyperparameters')
test_fail(lambda: carma_hparams('loan', epochs=2.5), contains='epochs must be a whole number ≥ 1')
# (tests/test_carma.py: every other bad value)

# %% [markdown]
# ## The two networks
#
# Plain ReLU MLPs with Xavier-uniform weights (ReLU gain) and biases 0.01, as in the original code.
# For two classes, the difference of two Gumbel variables is a Logistic(0, 1) variable, so the
# straight-through sample needs one uniform draw per feature. `CARMA` holds both networks **and** the
# frozen causal model and classifier they were trained with, so a saved model is everything a service
# needs.

# %%
#| export
def binary_gumbel_st(diff: torch.Tensor, # (…) logit of "intervene" minus logit of "keep"
                     tau: float, # temperature τ
                     # uniform(0, 1) draws shaped like diff (default: fresh ones)
                     u: torch.Tensor | None = None,
                    ) -> torch.Tensor:
    "Straight-through hard Gumbel-softmax sample of the 'intervene' class of a two-class categorical."
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
    "Mask and action networks over a frozen causal model (the flow, or VACA in chapter 11) and classifier."
    def __init__(self,
                 # abduct(x) → (n, D·d_z) latents; latent_counterfactual(z, a, δ) → x_cf
                 causal_model: nn.Module,
                 clf: Classifier, # the frozen classifier h
                 hp: dict, # hyperparameters (carma_hparams)
                 z_range: tuple[float, float], # clamp range of the latent shift
                ):
        super().__init__()
        if causal_model.scm != clf.scm:
            raise ValueError(f"the causal model is for {causal_model.scm!r} "
                             f"but the classifier for {clf.scm!r}")
        scm = get_scm(causal_model.scm)
        D, dz = scm.n_features, causal_model.latent_size
        self.scm, self.hp, self.names = scm.name, dict(hp), scm.names
        self.causal_model, self.clf = causal_model, clf
        self.mask_net = mlp([D * dz, *hp['mask_hidden'], 2 * D])
        self.action_net = mlp([D * dz + D, *hp['action_hidden'], D * dz])
        act = torch.zeros(D); act[scm.actionable] = 1.
        self.register_buffer('actionable', act)
        self.register_buffer('z_range', torch.tensor(z_range, dtype=torch.float32))
        self.register_buffer('limits', torch.stack(shift_limits(scm, z_range, dz)), persistent=False)
        # min, max (below)
        self.register_buffer('feature_range', torch.full((2, D), torch.nan, dtype=torch.float64))
        # acts with a smaller latent shift are not served (chapter 9); None: every act
        self.idle_tol = None

    @property
    def n_features(self): return len(self.names)

    def policy(self, z: torch.Tensor, # (…, D·d_z) factual latents
               sample: bool = False, # True: straight-through hard Gumbel-softmax (training); False: argmax
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        "Mask a (…, D) in {0,1}, clamped latent shift δ (…, D·d_z), and the mask logits (…, D, 2)."
        logits = self.mask_net(z).unflatten(-1, (self.n_features, 2))     # [..., 0] keep, [..., 1] intervene
        if sample: a = binary_gumbel_st(logits[..., 1] - logits[..., 0], self.hp['tau'])
        else: a = (logits[..., 1] > logits[..., 0]).to(z.dtype)
        a = a * self.actionable
        delta = self.action_net(torch.cat([z, a], -1)).clamp(*self.limits)
        return a, delta, logits

    def __repr__(self):
        return (f"CARMA({self.scm!r}, mask {list(self.hp['mask_hidden'])}, "
                f"action {list(self.hp['action_hidden'])}, "
                f"{type(self.causal_model).__name__} {list(self.causal_model.hidden)}, "
                f"classifier {list(self.clf.hidden) or 'logistic'})")


# %%
net = mlp([7, 16, 14])
test_eq([type(l).__name__ for l in net], ['Linear', 'ReLU', 'Linear'])
test_eq(net[0].bias.detach(), torch.full((16,), 0.01))
# the binary straight-through sample: P(intervene) = σ(logit difference) at any τ, hard 0/1 values,
# soft gradients
d = torch.full((200_000,), 0.8, requires_grad=True)
for tau in (.3, 2.): test_close(float(binary_gumbel_st(d, tau).mean()), float(torch.sigmoid(d[0])), eps=.01)
s_ = binary_gumbel_st(d, tau=0.3)
test_eq(set(s_.detach().unique().tolist()), {0., 1.})
s_.sum().backward(); assert d.grad.abs().sum() > 0


# %% [markdown]
# ## Serving
#
# A trained model answers a batch of people in one forward pass: the classifier says who is rejected,
# the causal model abducts their latents, the mask network picks the features, the action network the
# shifts, the causal model decodes the counterfactual, and the classifier scores it. The recommended
# values are the counterfactual values of the intervened features; people already accepted get an
# empty action and `accepted=True`, not an error.
#
# Serving has no gradients to carry, and for one person at a time PyTorch's per-operation overhead
# outweighs the arithmetic of these small networks. So a frozen model is compiled once (`freeze`, when it
# is trained or loaded) into a `ServingProgram` that replays the same computation on NumPy arrays of its
# weights, and `recommend` runs that one program for any number of people. The flow's part starts its
# inverse sweeps from the person's own features: the features above every act are already right, and
# each sweep fixes one more level below them — one sweep more than chapter 4's hard intervention, since
# an acted-on feature is itself solved from its shifted latent. VACA (chapter 11) is served through its
# torch methods.

# %%
#| export
def _flushed(a: np.ndarray) -> np.ndarray:
    ("`a` with its subnormal entries (weight decay leaves dead weights there; slow arithmetic on many CPUs) "
     "set to 0.")
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, 0, a).astype(a.dtype)

def _np_layers(seq: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    "(weight (in, out), bias) float32 arrays of each Linear of `seq`, subnormals flushed to zero."
    return [(_flushed(m.weight.detach().float().numpy().T.copy()),
             _flushed(m.bias.detach().float().numpy().copy()))
            for m in seq if isinstance(m, nn.Linear)]

def _np_relu_mlp(h: np.ndarray, layers) -> np.ndarray:
    for k, (w, b) in enumerate(layers):
        h = h @ w + b
        if k < len(layers) - 1: h = np.maximum(h, 0)
    return h

def _np_sigmoid(l: np.ndarray) -> np.ndarray: return 0.5 + 0.5 * np.tanh(0.5 * l)   # never overflows

class FlowProgram:
    "A frozen causal flow (chapter 4) as NumPy: abduction and the latent-shift counterfactual."
    def __init__(self, flow):
        f32 = lambda t: t.detach().float().numpy().copy()
        self.layers = [(f32(w).T.copy(), f32(b)) for w, b in flow._layers(torch.float32)]
        self.mean, self.std, self.height, self.D = (f32(flow.mean), f32(flow.std), flow.height.numpy().copy(),
                                                    flow.n_features)
        self.log_slope = abs(math.log(1e-3))

    def _conditioner(self, zt):
        h = zt
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            # ELU; the floor at −30 avoids slow subnormals (np.clip costs more per call at batch size 1)
            if k < len(self.layers) - 1: h = np.maximum(h, 0) + np.exp(np.maximum(np.minimum(h, 0), -30)) - 1
        h = h.reshape(len(zt), self.D, 2)
        return h[..., 0], h[..., 1] / (1 + np.abs(h[..., 1]) / self.log_slope)

    def abduct(self, x): # (n, D) raw features → (n, D) latents, and the conditioner's (b, s) at x
        zt = (x - self.mean) / self.std
        b, s = self._conditioner(zt)
        return zt * np.exp(s) + b, (b, s)

    def counterfactual(self, x, u, a, delta, at_x=None): # factual x, latents u, mask a, shift δ → x_cf
        # start from the factual: only descendants move; the first sweep's conditioner is abduct's (at_x)
        u_cf, zc = u + a * delta, (x - self.mean) / self.std
        acted = a.any(0)                                   # (1 + the longest path below an act sweeps)
        for k in range(1 + int(self.height[acted].max()) if acted.any() else 0):
            b, s = at_x if k == 0 and at_x is not None else self._conditioner(zc)
            zc = (u_cf - b) * np.exp(-s)
        return zc * self.std + self.mean

class TorchProgram:
    ("Any other causal model (e.g. VACA) through its torch `abduct` / `latent_counterfactual`, "
     "with NumPy in and out.")
    def __init__(self, model): self.model = model
    def abduct(self, x): # latents, and nothing for the counterfactual to reuse
        with torch.inference_mode(): return self.model.abduct(torch.from_numpy(x)).numpy(), None
    def counterfactual(self, x, u, a, delta, at_x=None):
        with torch.inference_mode():
            return self.model.latent_counterfactual(*(torch.from_numpy(v)
                                                      for v in (u, a, delta))).float().numpy()

@dataclass
class ServingProgram:
    "A frozen CARMA model as arrays: the one path every recommendation takes (`CARMA.recommend`)."
    causal: object        # FlowProgram or TorchProgram
    clf: object           # (layers, mean, std) of the classifier's ReLU MLP, or any other's probability
    mask_net: list        # layers, the last reduced to "intervene minus keep" per feature
    action_net: list
    actionable: np.ndarray
    limits: np.ndarray    # (2, D·d_z) lower and upper limits of the shift (chapter 5's shift_limits)
    dz: int               # latents per node: 1 for the flow, 4 for VACA

    def prob(self, x):
        if callable(self.clf): return self.clf(x)      # a classifier of your own (chapter 18), through torch
        layers, mean, std = self.clf
        return _np_sigmoid(_np_relu_mlp((x - mean) / std, layers)[:, 0])

    def act(self, u, accepted):
        "Deterministic mask (n, D) and clamped shift (n, D·d_z) for latents u; nothing for accepted people."
        a = (_np_relu_mlp(u, self.mask_net) > 0).astype(np.float32) * self.actionable * ~accepted[:, None]
        delta = np.minimum(np.maximum(_np_relu_mlp(np.concatenate([u, a], 1), self.action_net),
                                      self.limits[0]), self.limits[1])
        return a, delta

def serving_program(model: CARMA) -> ServingProgram:
    "Compile a frozen CARMA model into its `ServingProgram`."
    cm = model.causal_model
    causal = FlowProgram(cm) if type(cm).__name__ == 'CausalFlow' else TorchProgram(cm)
    f32 = lambda t: t.detach().float().numpy().copy()
    mask = _np_layers(model.mask_net)
    w, b = mask[-1]                                            # only "intervene" minus "keep" matters
    mask[-1] = (w[:, 1::2] - w[:, 0::2], b[1::2] - b[0::2])
    c = model.clf
    clf = ((_np_layers(c.net), f32(c.mean), f32(c.std)) if type(c) is Classifier else
           torch.inference_mode()(lambda x: c.predict_proba(torch.from_numpy(x), check=False).numpy()))
    return ServingProgram(causal, clf, mask, _np_layers(model.action_net), f32(model.actionable),
                          f32(model.limits), cm.latent_size)


# %% [markdown]
# `recommend` is that program behind input checks. It serves every act the mask network chooses, as
# the paper does; chapter 9 adds an option, `idle_tol` (off for the paper's model), that leaves out acts
# with a negligible latent shift.

# %%
#| export
def _as_rows(model: CARMA, x) -> np.ndarray:
    ("People as a float32 (n, D) array: plain float32 tensors and arrays pass, "
     "anything else gets the full checks.")
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 2 and not x.requires_grad:
        x = x.numpy()
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
            and x.shape[1] == model.n_features and np.isfinite(x).all()):
        x = as_features(x, model.n_features, 'x', model.names, dtype=torch.float32).numpy()
    return x

def _drop_idle(prog: ServingProgram, x, u, delta, answer: tuple, tol: float) -> tuple:
    ("The answer (mask, counterfactual, probability) without the acts whose latent shift is below `tol`, "
     "where that keeps people accepted (others: where it does not lower their probability).")
    a, x_cf, prob = answer
    idle = a.astype(bool) & (np.linalg.norm(delta.reshape(len(x), -1, prog.dz), axis=-1) < tol)
    rows = idle.any(1)
    if not rows.any(): return answer
    kept = a[rows] * ~idle[rows]
    x_kept = prog.causal.counterfactual(x[rows], u[rows], kept, delta[rows])
    p_kept = prog.prob(x_kept)
    use = (p_kept >= 0.5) | ((prob[rows] < 0.5) & (p_kept >= prob[rows] - 1e-6))   # (float noise: no loss)
    a, x_cf, prob = (v.copy() for v in answer); r = np.flatnonzero(rows)[use]
    a[r], x_cf[r], prob[r] = kept[use], x_kept[use], p_kept[use]
    return a, x_cf, prob

def _recommend(self: CARMA, x, # people: (n, D) raw features (tensor, array or list)
              ) -> Recommendation:
    "Recommendations for every person of x in one pass of the model's `ServingProgram`."
    if (prog := getattr(self, 'program', None)) is None:
        raise RuntimeError("this CARMA model is not frozen for serving: call model.freeze() first")
    x = _as_rows(self, x)
    accepted = prog.prob(x) >= 0.5
    u, at_x = prog.causal.abduct(x)
    a, delta = prog.act(u, accepted)
    x_cf = np.where(accepted[:, None], x, prog.causal.counterfactual(x, u, a, delta, at_x)).astype(np.float32)
    prob = prog.prob(x_cf)
    if self.idle_tol: a, x_cf, prob = _drop_idle(prog, x, u, delta, (a, x_cf, prob), self.idle_tol)
    mask, t = a.astype(bool), lambda v: torch.from_numpy(np.ascontiguousarray(v))
    return Recommendation(t(mask), t(np.where(mask, x_cf, x)), t(x_cf), t(prob.astype(np.float32)),
                          torch.ones(len(x), dtype=torch.bool), t(accepted))

def _freeze(self: CARMA) -> CARMA:
    "Evaluation mode, no gradients, and the `ServingProgram` compiled from the current weights."
    self.eval().requires_grad_(False)
    self.program = serving_program(self)
    return self

CARMA.recommend, CARMA.freeze = _recommend, _freeze

# %% [markdown]
# ## One model, before training
#
# Loan's classifier and causal flow (chapters 3 and 4) and a freshly initialised CARMA, its clamp range
# the floor and ceiling of the rejected training people's latents. Untrained, its answers are arbitrary —
# training them is chapter 8 — but everything about *how* it answers can be checked already: non-actionable
# features are never touched, one person or many get the same answer, accepted people get an empty
# action, and bad input is refused with a reason.

# %%
profile = get_profile()
pools = make_pools('loan')
clf = train_classifier('loan', pools.classifier, profile, verbose=False)
flow = fit_flow('loan', pools.causal, profile, verbose=False)
people = rejected(clf, pools.recourse.train.x)
z = flow.abduct(people)
torch.manual_seed(0)
model = CARMA(flow, clf, carma_hparams('loan'), (math.floor(float(z.min())), math.ceil(float(z.max()))))
rec = model.freeze().recommend(people)
print(f"{model}: {len(people)} rejected people, {float(rec.mask.sum(1).float().mean()):.2f} acts each, "
      f"{100 * float((rec.prob >= 0.5).float().mean()):.1f} % of them valid under the flow (untrained)")

# %%
loan = get_scm('loan')
test_eq(rec.mask[:, [j for j in range(7) if j not in loan.actionable]].any(), torch.tensor(False))
r50 = model.recommend(people[:50])     # one person or many: the same answer (to float rounding: BLAS blocks)
test_eq(r50.mask, rec.mask[:50]); test_close(r50.values, rec.values[:50], eps=1e-4)
test_eq(model.recommend(people[3].tolist()).mask, rec.mask[3:4])
ok = pools.recourse.test.x[clf.predict_proba(pools.recourse.test.x) >= 0.5][:5]
r_ok = model.recommend(ok)
test_eq(r_ok.accepted.all(), torch.tensor(True)); test_eq(r_ok.mask.any(), torch.tensor(False))
test_eq(r_ok.values, ok)
test_fail(lambda: model.recommend(torch.zeros(2, 5)), contains='5 columns but 7 features')
test_fail(lambda: model.recommend(torch.full((1, 7), float('nan'))), contains='NaN or inf')

# %% [markdown]
# The serving program computes what the networks compute: the model's own torch modules, run on the
# same people, give the same masks and (to float rounding) the same counterfactuals.

# %%
with torch.no_grad():
    a_t, d_t, _ = model.policy(z)
    x_t = flow.latent_counterfactual(z, a_t, d_t)
test_eq(rec.mask, a_t.bool()); test_close(rec.x_cf, x_t, eps=1e-3)


# %% [markdown]
# ## Where the model can be trusted
#
# The networks, the flow and the classifier have seen only the people of their training data, and a
# forward pass answers for anybody, however far outside. So a model records the minimum and maximum
# of each feature over its recourse training split (`feature_range`, saved with its weights); its
# **domain** is the SCM's kinds and bounds ∩ that range widened by `DOMAIN_MARGIN` (chapter 5), which
# `carma-nb recommend` checks every applicant and every counterfactual against (chapter 13).

# %%
#| export
def set_training_range(model: CARMA, # a CARMA model
                       x: torch.Tensor, # (n, D) the recourse training people (all of them, unfiltered)
                      ) -> CARMA:
    "Record each feature's minimum and maximum over the training people on `model` (in place); returns it."
    if not isinstance(model, CARMA):
        raise TypeError(f"set_training_range needs a CARMA model, got {type(model).__name__}")
    with torch.no_grad():
        model.feature_range.copy_(training_range(as_features(x, model.n_features, 'x', model.names)))
    return model

def _domain(self: CARMA, margin: float = DOMAIN_MARGIN, # share of the training range added on each side
           ) -> FeatureDomain:
    "Where the model is trusted (chapter 5): the SCM's kinds and bounds ∩ its training range ± `margin`."
    if not torch.isfinite(self.feature_range).all():
        raise ValueError("this CARMA model has no training range, so its domain is unknown: train it with "
                         "train_carma, or call set_training_range(model, recourse_pool.train.x)")
    return feature_domain(self.scm, self.feature_range, margin)

CARMA.domain = _domain

# %%
test_fail(lambda: model.domain(), contains='call set_training_range(model')
set_training_range(model, pools.recourse.train.x)
test_eq(model.feature_range, training_range(pools.recourse.train.x))
assert not outside_domain(model.domain(), people).any()                 # the training people are inside
assert outside_domain(model.domain(), torch.tensor([[7., 0, 0, 0, 0, 0, 0]])).any()    # a gender of 7 is not

# %% [markdown]
# ## Saving and loading
#
# A saved model holds the two networks, the frozen causal model and the classifier (each with its
# scaler), the training range, and the configuration: everything `carma-nb recommend` needs. Loading
# trusts nothing: every tensor must be present, of its shape and finite (chapter 0's `load_weights`),
# and the causal model must be one of the package's own classes, by exact name.

# %%
#| export
_FROZEN = ('causal_model.', 'clf.')   # a CARMA's tensors that belong to its causal model and classifier

def carma_from_checkpoint(ck: Checkpoint, cm, clf: Classifier, idle_tol: float | None) -> CARMA:
    ("A frozen CARMA from a checkpoint, every tensor checked (chapter 0), serving with `idle_tol` "
     "(the recipe's).")
    cfg, source = ck.config, ck.path or 'a CARMA checkpoint'
    own = {k: v for k, v in ck.state_dict.items() if not k.startswith(_FROZEN)}
    z_range = own.get('z_range')
    if not (isinstance(z_range, torch.Tensor) and z_range.shape == (2,) and torch.isfinite(z_range).all()):
        raise ValueError(f"{source}: no valid 'z_range' tensor (the clamp range of the latent shift); "
                         "train or save the model again")
    model = CARMA(cm, clf, cfg['hp'], tuple(z_range.tolist()))
    load_weights(model, own, source, skip=_FROZEN)
    model.idle_tol = idle_tol
    model.history = {k.removeprefix('history_'): v for k, v in (ck.extras or {}).items()}
    model.config = cfg
    return model.freeze()

CAUSAL_MODELS = ('carma_nb.flow.CausalFlow', 'carma_nb.vaca.VACA')  # the causal models a saved CARMA may name

def save_carma(model: CARMA, path, extra: dict | None = None, # more (JSON-able) entries for its config
              ) -> Path:
    "Save CARMA with its causal model and classifier (weights, scalers, configs) in one checkpoint."
    model.domain()                                   # refuses a model without a training range, with the fix
    if type(model.clf) is not Classifier:
        raise TypeError("only a model with chapter 3's Classifier can be saved: a classifier of your own is "
                        "your code, and a model file is loaded without running code; keep it in Python")
    cm = model.causal_model
    cfg = {'kind': 'carma-model', 'scm': model.scm, 'hp': model.hp,
           'causal_class': f'{type(cm).__module__}.{type(cm).__qualname__}', 'causal_hidden': list(cm.hidden),
           'clf_hidden': list(model.clf.hidden), 'train_config': getattr(model, 'config', None),
           'idle_tol': model.idle_tol, **(extra or {})}
    return save_checkpoint(path, model.state_dict(), cfg)

def _causal_class(name: str, source) -> type:
    "The causal-model class a checkpoint names, if it is one of `CAUSAL_MODELS`."
    if name not in CAUSAL_MODELS:
        raise ValueError(f"{source} names causal model class {name!r}; "
                         f"only {', '.join(CAUSAL_MODELS)} can be loaded")
    module, _, cls = name.rpartition('.')
    return getattr(importlib.import_module(module), cls)

def _frozen_part(cls, sd: dict, prefix: str, cfg: dict, hidden_key: str, source):
    ("The causal model or classifier stored under `prefix` in a saved CARMA, checked tensor by tensor "
     "and frozen.")
    part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not {'mean', 'std'} <= set(part):
        raise ValueError(f"{source}: the {prefix[:-1]}'s scaler (mean, std) is missing; save the model again")
    model = cls(cfg['scm'], tuple(cfg[hidden_key]), StandardScaler(part['mean'], part['std']))
    return load_weights(model, part, f'{source} ({prefix[:-1]})').freeze()

def load_carma(path, scm: str | None = None, kind: str = 'carma-model') -> CARMA:
    "Load a saved CARMA (causal model and classifier included); refuse another `scm`'s, or `kind` of file."
    ck = load_checkpoint(path, expect={'kind': kind, **({'scm': get_scm(scm).name} if scm else {})})
    cfg, sd = ck.config, ck.state_dict
    r = sd.get('feature_range')
    if not (isinstance(r, torch.Tensor) and r.ndim == 2 and torch.isfinite(r).all()):
        raise ValueError(f"model file {path} has no feature_range "
                         "(each feature's training minimum and maximum), so its domain is unknown and "
                         "applicants could not be checked: train the model again and save it with save_carma")
    if lacking := [k for k in ('scm', 'hp', 'causal_class', 'causal_hidden', 'clf_hidden') if k not in cfg]:
        raise ValueError(f"{path}: the saved configuration lacks {lacking}; save it again with save_carma")
    cm = _frozen_part(_causal_class(cfg['causal_class'], path), sd, 'causal_model.', cfg, 'causal_hidden',
                      path)
    clf = _frozen_part(Classifier, sd, 'clf.', cfg, 'clf_hidden', path)
    return carma_from_checkpoint(Checkpoint(sd, cfg.get('train_config') or {'hp': cfg['hp']}, None,
                                             Path(path)), cm, clf, cfg.get('idle_tol'))


# %%
with tempfile.TemporaryDirectory() as d:
    path = save_carma(model, Path(d)/'carma.pt')
    again = load_carma(path, scm='loan')
    test_eq(again.recommend(people).values, rec.values)
    test_fail(lambda: load_carma(path, scm='chain-lin'),
              contains="has scm='loan' but scm='chain-lin' was requested")
    ck = load_checkpoint(path)
    def damaged(edit_sd=lambda sd: sd, edit_cfg=lambda c: c):
        save_checkpoint(Path(d)/'bad.pt', edit_sd(dict(ck.state_dict)), edit_cfg(dict(ck.config)))
        return lambda: load_carma(Path(d)/'bad.pt')
    test_fail(damaged(lambda sd: {k: v for k, v in sd.items() if k != 'action_net.2.weight'}),
              contains="bad.pt: missing tensors ['action_net.2.weight']")
    test_fail(damaged(lambda sd: {**sd, 'mask_net.0.bias': sd['mask_net.0.bias'] * float('nan')}),
              contains="'mask_net.0.bias' holds NaN")
    test_fail(damaged(lambda sd: {k: v for k, v in sd.items() if k != 'clf.net.0.weight'}),
              contains='bad.pt (clf): missing')
    test_fail(damaged(lambda sd: {k: v for k, v in sd.items() if k != 'feature_range'}),
              contains='has no feature_range')
    test_fail(damaged(edit_cfg=lambda c: {**c, 'causal_class': 'os.system'}),
              contains="only carma_nb.flow.CausalFlow")
    test_fail(lambda: save_carma(CARMA(flow, clf, model.hp, (-4., 4.)), Path(d)/'u.pt'),
              contains='call set_training_range(model')

# %% [markdown]
# A model's answers are only as good as its training: chapter 8 trains the two networks the paper's
# way, and compares the trained model with the oracle.

# %%
#| hide
import nbdev; nbdev.nbdev_export()

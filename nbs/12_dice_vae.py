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
#| default_exp dice_vae

# %% [markdown]
# # DiCE-VAE: a non-causal amortized baseline
#
# > What amortization without a causal model looks like: one network answers everyone, but its edits
# > ignore how features depend on each other.
#
# CARMA is not the first amortized recourse method. The paper compares it with the DiCE-VAE of Mahajan,
# Tan & Sharma (2019), which also trains a network once and answers every person in one pass — but
# **edits features directly**. A variational autoencoder maps the standardised person $\tilde x$ to a
# latent code $z$ and decodes a change $\Delta$; the counterfactual is
#
# $$\tilde x' = \tilde x + \Delta \odot m, \qquad m_j = 1 \text{ on every actionable feature.}$$
#
# Nothing propagates along the causal graph. Its loss mirrors CARMA's (chapter 8) without the mask: the
# cost of chapter 5 with every actionable feature charged, the KL of the encoder to $\mathcal N(0, I)$,
# and the same damped hinge–multiplier term for validity. At evaluation the latent is the encoder mean.
#
# Two consequences to look for (paper Table 1 and Figs. 9–10):
#
# - it changes **every** actionable feature for every person, so its cost is a sum over all of them — the
#   paper reports 1.8–3× CARMA's;
# - its counterfactual is the edited row itself. The classifier accepts that row (*coverage*), but in
#   the world the edited features' descendants respond too, so **causal validity** — the same values
#   applied as interventions in the true SCM — can differ from coverage.

# %%
#| export
from __future__ import annotations

import time
from typing import NamedTuple

import pandas as pd
import torch
from torch import nn

from carma_nb.carma import mlp
from carma_nb.training import (METHOD_COLORS, CarmaOptions, StackedMLP, masked_mean, stacked_training,
                               train_carma_seeds, validity_penalty)
from carma_nb.classifier import Classifier
from carma_nb.core import (TRAINER_VERSION, TrainOptions, as_features, as_options, cached_stack,
                           check_positive, check_seed, check_seeds, check_whole, get_profile, load_weights,
                           one_thread)
from carma_nb.data import Pool, Pools, resolve_pool, split_id
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference
from carma_nb.recourse import Recommendation, RecourseProblem, evaluate_recourse, recourse_problem, rejected
from carma_nb.scm import SCM, SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt

from carma_nb.classifier import train_classifier
from carma_nb.core import save_figure, save_table

# %% [markdown]
# ## Hyperparameters
#
# The paper's Table 4: one hidden layer of 64, lr $5\cdot10^{-5}$, batch 128, 250 epochs (loan 200), and
# a hinge margin per SCM. The profile scales the epochs as it does for CARMA.

# %%
#| export
DICE_MARGIN = {'triangle-lin': 0.003, 'collider-lin': 0.003, 'chain-lin': 0.003, 'collider-nlin': 0.003,
               'triangle-nlin': 0.042, 'chain-nlin': 0.012, 'loan': 0.002}   # paper Table 4

def dice_hparams(scm: SCM | str, # the SCM (its margin; loan trains 200 epochs)
                 **overrides, # any of lr, hidden, batch, epochs, margin
                ) -> dict:
    "The paper's DiCE-VAE hyperparameters for `scm` (Table 4), with overrides."
    name = get_scm(scm).name
    hp = dict(lr=5e-5, hidden=64, batch=128, epochs=200 if name == 'loan' else 250,
              margin=DICE_MARGIN.get(name, 0.003))
    unknown = set(overrides) - set(hp)
    if unknown: raise ValueError(f"unknown DiCE-VAE hyperparameters {sorted(unknown)}; known: {sorted(hp)}")
    hp.update(overrides)
    hp['lr'], hp['margin'] = check_positive(hp['lr'], 'lr'), check_positive(hp['margin'], 'margin', zero=True)
    for k in ('hidden', 'batch', 'epochs'): hp[k] = check_whole(hp[k], k)
    return hp


# %%
test_eq(dice_hparams('loan')['epochs'], 200)
test_eq(dice_hparams('triangle-nlin')['margin'], 0.042)
test_eq(dice_hparams('chain-lin', lr=1e-3)['lr'], 1e-3)
test_fail(lambda: dice_hparams('loan', width=3), contains='unknown DiCE-VAE hyperparameters')
test_fail(lambda: dice_hparams('loan', temperature=1), contains='unknown DiCE-VAE hyperparameters')
test_fail(lambda: dice_hparams('loan', margin=-1), contains='margin must be a finite number ≥ 0')


# %% [markdown]
# ## The edit
#
# The encoder reads the standardised person and outputs the mean and log-variance of a $D$-dimensional
# Gaussian latent; the decoder reads the latent together with the person (a conditional VAE, so the
# change can depend on where the person stands) and outputs $\Delta$. The standardisation is the
# recourse problem's, so distances are measured exactly as in the cost.
#
# `dice_edit` is written once for any leading shape: one model on $(n, D)$ rows, or $S$ stacked models
# on $(S, b, D)$ (chapter 8's `StackedMLP`), so serving and training share it.

# %%
#| export
class DiceEdit(NamedTuple):
    "One pass of the DiCE-VAE: the edited rows and the encoder's Gaussian."
    x_new: torch.Tensor   # (…, D) edited rows, raw units
    mu: torch.Tensor      # (…, D) encoder mean
    logvar: torch.Tensor  # (…, D) encoder log-variance

def actionable_mask(scm: SCM | str) -> torch.Tensor:
    "m of the edit: (D,) 1.0 on the actionable features, 0.0 elsewhere."
    scm = get_scm(scm)
    m = torch.zeros(scm.n_features); m[scm.actionable] = 1.
    return m

def dice_edit(encoder: nn.Module, # standardised rows (…, D) → mean and log-variance (…, 2D)
              decoder: nn.Module, # [latent, standardised rows] (…, 2D) → change Δ (…, D)
              problem: RecourseProblem, # the standardisation of the cost
              x: torch.Tensor, # (…, D) raw rows
              noise: torch.Tensor | None = None, # (…, D) standard normal draws (training); None: z = μ
             ) -> DiceEdit:
    "The edit x̃' = x̃ + Δ ⊙ m of raw rows x, with z = μ (+ noise · σ while training)."
    if x.shape[-1] != problem.n_features or (noise is not None and noise.shape != x.shape):
        want = f"x must have {problem.n_features} columns ({problem.scm.name}) and noise x's shape"
        got = f"x {tuple(x.shape)}, noise {None if noise is None else tuple(noise.shape)}"
        raise ValueError(f"{want}; got {got}")
    m = actionable_mask(problem.scm)
    xt = problem.standardise(x)
    mu, logvar = encoder(xt).chunk(2, -1)
    z = mu if noise is None else mu + noise * (0.5 * logvar).exp()
    xt_new = xt + decoder(torch.cat([z, xt], -1)) * m
    return DiceEdit(torch.where(m.bool(), xt_new * problem.std + problem.mean, x), mu, logvar)


# %% [markdown]
# The model holds the two networks, the problem and the frozen classifier. `recommend` returns chapter
# 5's `Recommendation`, like every recommender: the mask is every actionable feature, the target values
# and the counterfactual are both the edited row, and people the classifier already accepts get no edit.

# %%
#| export
class DiceVAE(nn.Module):
    "Conditional VAE proposing a direct edit x̃' = x̃ + Δ ⊙ m of the actionable features (no causal graph)."
    def __init__(self, problem: RecourseProblem, # the shared recourse problem of the SCM
                 clf: Classifier, # its frozen classifier
                 hp: dict, # dice_hparams
                ):
        super().__init__()
        scm = problem.scm
        if clf.scm != scm.name: raise ValueError(f"the classifier is for {clf.scm!r}, not {scm.name!r}")
        D = scm.n_features
        self.scm, self.names, self.hp, self.problem, self.clf = scm.name, scm.names, dict(hp), problem, clf
        self.encoder = mlp([D, hp['hidden'], 2 * D])
        self.decoder = mlp([2 * D, hp['hidden'], D])
        self.register_buffer('actionable', actionable_mask(scm))

    @property
    def n_features(self): return len(self.names)
    def __repr__(self): return f"DiceVAE({self.scm!r}, hidden {self.hp['hidden']}, latent {self.n_features})"

    def edit(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> DiceEdit:
        "`dice_edit` with this model's networks, for validated raw rows x (…, D)."
        return dice_edit(self.encoder, self.decoder, self.problem, x, noise)

    def recommend(self, x) -> Recommendation:
        "Edits for raw features x (n, D); people already accepted get no edit."
        x = as_features(x, self.n_features, 'x', self.names)
        with torch.inference_mode():
            accepted = self.clf.predict_proba(x, check=False) >= 0.5
            x_new = torch.where(accepted[:, None], x, self.edit(x).x_new)
            mask = self.actionable.bool().expand_as(x) & ~accepted[:, None]
            prob = self.clf.predict_proba(x_new, check=False)
            return Recommendation(mask, x_new, x_new, prob, torch.ones_like(accepted), accepted)


# %%
loan = get_scm('loan')
test_eq(actionable_mask('loan'), torch.tensor([0., 0., 1., 1., 0., 1., 1.]))
_prob = recourse_problem('loan')
_enc, _dec = mlp([7, 8, 14]), mlp([14, 8, 7])
_x = torch.randn(5, 7) * _prob.std + _prob.mean
with torch.no_grad():
    _e = dice_edit(_enc, _dec, _prob, _x)
    fixed = loan.immutable + [loan.index('duration')]
    test_eq(_e.x_new[:, fixed], _x[:, fixed])                      # only actionable features move
    stacked = dice_edit(_enc, _dec, _prob, _x[None].expand(3, 5, 7))
    test_close(stacked.x_new[2], _e.x_new)                         # any leading shape
    test_eq(dice_edit(_enc, _dec, _prob, _x, torch.zeros(5, 7)).x_new, _e.x_new)   # zero noise: the mean
    test_fail(lambda: dice_edit(_enc, _dec, _prob, _x[:, :4]), contains='x must have 7 columns (loan)')


# %% [markdown]
# ## The loss
#
# One function computes the loss of $S$ models at once on their batches $(S, b, D)$: the mean cost of
# the edit (every actionable feature charged), the mean KL of the encoder to $\mathcal N(0, I)$, and the
# damped multiplier term of chapter 8 on $p = h(x')$ — one loss per model, plus its parts for the
# training curves. The hinge sees the classifier's own probability, as in the paper. A single model is
# the case $S = 1$: the check below runs the function the trainer runs.

# %%
#| export
def dice_loss(problem: RecourseProblem, # the shared recourse problem
              clf: Classifier, # the frozen classifier
              x: torch.Tensor, # (S, b, D) raw rows of each model's batch
              edit: DiceEdit, # `dice_edit` of x by the S models
              margin: float, # hinge margin ε
              lam: torch.Tensor, # (S,) current multipliers λ
              keep: torch.Tensor | None = None, # (b,) 1 for real people, 0 for padding (chapter 8)
             ) -> tuple[torch.Tensor, torch.Tensor]:
    "DiCE-VAE's loss per model (S,) and its parts (4, S): cost, KL, hinge, share accepted."
    if x.dim() != 3 or edit.x_new.shape != x.shape:
        raise ValueError(f"x must be (S models, b people, D) and edit.x_new its shape, got {tuple(x.shape)} "
                         f"and {tuple(edit.x_new.shape)}: add a leading axis for one model (x[None])")
    p = clf.predict_proba(edit.x_new, check=False)                                   # (S, b)
    cost = masked_mean(problem.cost(x, edit.x_new, actionable_mask(problem.scm).expand_as(x)), keep)
    kl = masked_mean(0.5 * (edit.mu ** 2 + edit.logvar.exp() - 1 - edit.logvar).sum(-1), keep)
    penalty, g = validity_penalty(p, margin, lam, keep)
    return cost + kl + penalty, torch.stack([cost, kl, g, masked_mean((p >= 0.5).float(), keep)]).detach()


# %%
_clf = train_classifier('loan', verbose=False)
_m = DiceVAE(_prob, _clf, dice_hparams('loan'))
_xb = _x[None]
loss, parts = dice_loss(_prob, _clf, _xb, _m.edit(_xb, torch.randn(1, 5, 7)), 0.002, torch.zeros(1))
test_eq(loss.shape, (1,)); test_eq(parts.shape, (4, 1))
test_fail(lambda: dice_loss(_prob, _clf, _x, _m.edit(_x), .002, torch.zeros(1)), contains='a leading axis')
loss.sum().backward()
nets = [*_m.encoder.parameters(), *_m.decoder.parameters()]
test_eq(all(p.grad.abs().sum() > 0 for p in nets if p.ndim == 2), True)   # gradients reach both networks
_e0 = _m.edit(_xb)
test_close(dice_loss(_prob, _clf, _xb, _e0, 0.002, torch.zeros(1))[1][0],   # its cost part: chapter 5's cost
           _prob.cost(_x, _e0.x_new[0], _m.actionable.expand(5, 7)).mean()[None], eps=1e-6)


# %% [markdown]
# ## Training
#
# Each seed's model is trained on the rejected people of the recourse training split. Seeds are trained
# together, stacked, with chapter 8's training loop (`stacked_training`: per-model batch order, Adam,
# one multiplier per model) and model cache (`cached_stack`); each seed has its own initialisation,
# batch order and noise, so a seed gives the same model alone or in any stack.

# %%
#| export
@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_dice_seeds(problem: RecourseProblem, clf: Classifier, pool: Pool, hp: dict, seeds: list[int],
                    verbose: bool) -> list[tuple]:
    "Train one DiCE-VAE per seed, all at once; (state dict, None, extras) per seed."
    t0 = time.perf_counter()
    with torch.no_grad(): x = rejected(clf, pool.train.x)
    D, H = problem.n_features, hp['hidden']
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    enc, dec = StackedMLP([D, H, 2 * D], gens), StackedMLP([2 * D, H, D], gens)
    def step(idx, lam, keep):
        xb = x[idx]                                                                   # (S, b, D)
        noise = torch.stack([torch.randn(idx.shape[1], D, generator=g) for g in gens])
        return dice_loss(problem, clf, xb, dice_edit(enc, dec, problem, xb, noise), hp['margin'], lam, keep)
    curves = stacked_training(step, [*enc.parameters(), *dec.parameters()], len(x), gens, hp,
                              f'DiCE-VAE {problem.scm.name}' if verbose else None)
    seconds = torch.tensor((time.perf_counter() - t0) / len(seeds))
    act = actionable_mask(problem.scm)
    return [({**enc.member(s, 'encoder'), **dec.member(s, 'decoder'), 'actionable': act}, None,
             {**{f'history_{k}': v[:, s].clone() for k, v in curves.items()}, 'train_seconds': seconds})
            for s in range(len(seeds))]

def _dice_from_checkpoint(ck, problem: RecourseProblem, clf: Classifier) -> DiceVAE:
    "A frozen DiceVAE from a checkpoint (its tensors checked: present, shaped, finite)."
    model = DiceVAE(problem, clf, ck.config['hp'])
    load_weights(model, ck.state_dict, ck.path or 'a DiCE-VAE checkpoint', skip=('clf.',))
    model.history = {k.removeprefix('history_'): v for k, v in (ck.extras or {}).items()}
    model.config = ck.config
    model.eval()
    for p in model.parameters(): p.requires_grad_(False)
    return model

def train_dice_vae_seeds(scm: SCM | str, # the SCM
                         clf: Classifier, # its frozen classifier
                         pool: Pool | Pools | None = None, # recourse pool (default: make_pools(scm).recourse)
                         seeds=(0,), # one model per seed; the missing ones are trained together
                         # overrides of dice_hparams, profile (it scales Table 4's epochs), cache, progress
                         options: TrainOptions | dict | None = None,
                        ) -> list[DiceVAE]:
    "DiCE-VAE baselines for several seeds, trained on the rejected recourse-training people (paper Table 4)."
    scm, o = get_scm(scm), as_options(options)
    if clf.scm != scm.name: raise ValueError(f"the classifier was trained for {clf.scm!r}, not {scm.name!r}")
    seeds = check_seeds(seeds)
    pool = resolve_pool(scm, pool, 'recourse')
    hp = dice_hparams(scm, **(o.hparams or {}))
    if 'epochs' not in (o.hparams or {}):                          # the profile scales the paper's epochs
        hp['epochs'] = max(1, round(hp['epochs'] * get_profile(o.profile).carma_epoch_frac))
    problem = recourse_problem(scm, pool)
    cfgs = [{'kind': 'dice-vae', 'trainer': TRAINER_VERSION, 'scm': scm.name, 'hp': hp, 'seed': s,
             'train': split_id(pool.train), 'classifier': getattr(clf, 'config', None)} for s in seeds]
    fit = lambda todo: _fit_dice_seeds(problem, clf, pool, hp, [seeds[i] for i in todo], o.verbose)
    return [_dice_from_checkpoint(ck, problem, clf) for ck in cached_stack('dice-vae', cfgs, fit, o.cache)]

def train_dice_vae(scm: SCM | str, clf: Classifier, pool: Pool | Pools | None = None, seed: int = 0,
                   **options, # any field of chapter 0's `TrainOptions`: hparams, profile, cache, verbose
                  ) -> DiceVAE:
    "Train (or fetch from the cache) one DiCE-VAE (see `train_dice_vae_seeds`)."
    if isinstance(seed, dict): raise TypeError("the 4th argument is the seed; hyperparameters go in hparams=")
    return train_dice_vae_seeds(scm, clf, pool, [check_seed(seed)], options)[0]


# %% [markdown]
# ## On loan
#
# Trained on loan's rejected recourse-training people, then evaluated on the rejected test people with
# the shared evaluation of chapter 5, next to the oracle of chapter 6.

# %%
profile = get_profile()
ref = oracle_reference('loan', profile)
t0 = time.perf_counter()
dice = train_dice_vae('loan', ref.clf, ref.pools.recourse, profile=profile, cache=False, verbose=False)
print(f'{dice}: {dice.hp["epochs"]} epochs in {time.perf_counter() - t0:.1f} s ({profile.name} profile)')
rec = dice.recommend(ref.people)
rep = evaluate_recourse(ref.problem, ref.clf, ref.people, rec)
pd.DataFrame([rep.metrics, ref.metrics], index=['DiCE-VAE', 'oracle']).round(3)

# %% [markdown]
# Checks: every actionable feature is edited and nothing else; evaluation is deterministic; people already
# accepted are left alone; a seed trained alone or in a stack is the same model; bad input is refused.

# %%
test_eq(rec.mask, torch.zeros_like(rec.mask).index_fill_(1, torch.tensor(loan.actionable), True))
test_eq((rec.values != ref.people)[:, loan.immutable + [loan.index('duration')]].any(), torch.tensor(False))
test_eq(dice.recommend(ref.people[:20]).values, dice.recommend(ref.people[:20]).values)
ok = ref.pools.recourse.test.x[ref.clf.predict_proba(ref.pools.recourse.test.x) >= 0.5][:3]
test_eq(dice.recommend(ok).values, ok); test_eq(dice.recommend(ok).mask.any(), torch.tensor(False))
few = TrainOptions(hparams={'epochs': 2}, cache=False, verbose=False)
alone = train_dice_vae('loan', ref.clf, ref.pools.recourse, seed=1, **vars(few))     # its keywords
both = train_dice_vae_seeds('loan', ref.clf, ref.pools.recourse, [0, 1], few)
for k, v in alone.state_dict().items():
    if k.startswith(('encoder', 'decoder')): test_close(both[1].state_dict()[k], v, eps=1e-5)
test_fail(lambda: dice.recommend(torch.zeros(2, 3)), contains='3 columns but 7 features')
chain_clf = train_classifier('chain-lin', verbose=False)
test_fail(lambda: train_dice_vae('loan', chain_clf), contains="trained for 'chain-lin'")
test_fail(lambda: train_dice_vae('loan', ref.clf, seed=-1), contains='seed must be a whole number ≥ 0')
test_fail(lambda: train_dice_vae('loan', ref.clf, None, {'epochs': 2}), contains='go in hparams=')
test_fail(lambda: train_dice_vae_seeds('loan', ref.clf, None, [0], CarmaOptions()),     # it has no recipe
          contains='options must be a TrainOptions')

# %% [markdown]
# What "ignores the causal graph" means for one person: the DiCE-VAE's counterfactual is the edited row,
# but carrying out its edit in the world (the true SCM, chapter 1) also moves the loan's duration, which
# depends on the loan amount and is not edited. The classifier was shown a row that will not happen.

# %%
world = loan.counterfactual(ref.people, rec.mask, rec.values)
moved = (world - rec.x_cf).abs() > 1e-4                          # (n, D) where the world disagrees
pd.DataFrame({'edited row': rec.x_cf[0].numpy(), 'in the world': world[0].numpy()}, index=loan.names).round(2)

# %%
test_eq(moved[:, [j for j in range(7) if j != loan.index('duration')]].any(), torch.tensor(False))
changed_amount = (rec.values != ref.people)[:, loan.index('loan_amount')]
assert moved[changed_amount, loan.index('duration')].float().mean() > 0.99   # duration follows the amount

# %% [markdown]
# ## All seven SCMs: DiCE-VAE, CARMA and the oracle
#
# Each method serves the same rejected test people; DiCE-VAE and CARMA over the profile's seeds (their
# models come from the model cache when chapter 8 already trained them). The paper's DiCE-VAE costs
# (Table 1) are shown alongside.

# %%
#| export
PAPER_DICE_COST = {'triangle-lin': 33.57, 'collider-lin': 23.98, 'chain-lin': 25.98, 'triangle-nlin': 24.91,
                   'collider-nlin': 8.74, 'chain-nlin': 21.46, 'loan': 13.32}   # paper Table 1, references
_COLUMNS = ('cost x100', 'coverage %', 'validity %', 'acts', 'prob')

def _method_columns(method: str, reports: list) -> dict:
    "One method's Table-1 columns, averaged over its seeds' reports."
    df = pd.DataFrame([r.metrics for r in reports])
    return {f'{method} {c}': df[c].mean() for c in _COLUMNS}

def _scm_row(name: str, p, seeds: range, verbose: bool) -> tuple[dict, dict]:
    "One SCM's row of the baseline table, and its first-seed reports (method -> RecourseReport)."
    ref = oracle_reference(name, p)
    flow = fit_flow(name, ref.pools.causal, p, verbose=False)
    pool = ref.pools.recourse
    o = TrainOptions(profile=p, verbose=verbose)
    methods = {'DiCE-VAE': train_dice_vae_seeds(name, ref.clf, pool, seeds, o),
               'CARMA': train_carma_seeds(name, ref.clf, flow, pool, seeds, CarmaOptions(**vars(o)))}
    first = {'oracle': evaluate_recourse(ref.problem, ref.clf, ref.people, ref.result)}
    row = {'scm': name, 'seeds': len(seeds), 'people': len(ref.people),
           'oracle cost x100': ref.metrics['cost x100']}
    for method, models in methods.items():
        reports = [evaluate_recourse(ref.problem, ref.clf, ref.people, m.recommend(ref.people))
                   for m in models]
        first[method] = reports[0]
        row.update(_method_columns(method, reports))
    row['paper DiCE-VAE cost x100'] = PAPER_DICE_COST.get(name, float('nan'))
    return row, first

def baseline_table(profile=None, # seeds, epochs and people from the profile
                   scms=SCM_NAMES, # the SCMs, one row each
                   seed0: int = 0, # the first seed (the profile says how many)
                   verbose: bool = False) -> tuple[pd.DataFrame, dict]:
    "DiCE-VAE, CARMA and the oracle per SCM (means over seeds), and each SCM's first-seed reports."
    p, seed0 = get_profile(profile), check_seed(seed0, 'seed0')
    scms = [get_scm(n).name for n in ([scms] if isinstance(scms, str) else scms)]
    rows, reports = [], {}
    for name in scms:
        row, reports[name] = _scm_row(name, p, range(seed0, seed0 + p.seeds), verbose)
        rows.append(row)
    df = pd.DataFrame(rows).set_index('scm')
    df['DiCE-VAE / CARMA cost'] = df['DiCE-VAE cost x100'] / df['CARMA cost x100']
    return df, reports


# %%
table, reports = baseline_table(profile)
save_table(table.round(3), 'dice_vae_table')
print(f'profile: {profile.name} ({profile.seeds} seeds)')
table.round(2)

# %% [markdown]
# What the table shows, and the checks that hold it to it:
#
# - the DiCE-VAE acts on every actionable feature for every person (3 on the four-node SCMs, 4 on loan);
#   CARMA chooses fewer;
# - so it pays more than CARMA on most SCMs (the paper: 1.8–3× on all seven). Not on the two chains:
#   at the paper profile our DiCE-VAE costs 14.6 (chain-lin) and 10.2 (chain-nlin), about half the
#   paper's, while a few of the paper's-CARMA seeds there fail and cost far more than the others
#   (chapter 15's list of differences, items 7 and below); on chain-nlin even CARMA's median seed (12.6)
#   costs more. The improved recipe of chapter 9 (6.4 and 6.8) is well below DiCE-VAE on both;
# - on the four-node SCMs every feature downstream of an edit is itself edited, so the world cannot
#   disagree with the edited row: causal validity equals coverage exactly. On loan they differ, by the
#   people for whom the loan's duration, which the edit leaves alone, moves the classifier's decision.

# %%
n_actionable = [float(len(get_scm(n).actionable)) for n in table.index]
test_eq(table['DiCE-VAE acts'].tolist(), n_actionable)
# (undertrained at the quick profile: at most as many)
fewer = (table['CARMA acts'] < table['DiCE-VAE acts'] if profile.name == 'paper'
         else table['CARMA acts'] <= table['DiCE-VAE acts'])
assert fewer.all(), table[['CARMA acts', 'DiCE-VAE acts']]
assert (table['DiCE-VAE / CARMA cost'] > 1).sum() >= 5, table['DiCE-VAE / CARMA cost']
four = [n for n in table.index if n != 'loan']
test_eq(table.loc[four, 'DiCE-VAE validity %'].tolist(), table.loc[four, 'DiCE-VAE coverage %'].tolist())
r, gap = table['DiCE-VAE / CARMA cost'], table['DiCE-VAE validity %'] - table['DiCE-VAE coverage %']
print(f'DiCE-VAE costs {r.min():.1f}–{r.max():.1f}× CARMA (paper: 1.8–3×); '
      f'validity − coverage on loan: {gap["loan"]:+.2f} points')


# %% [markdown]
# How far our DiCE-VAE costs are from the paper's is one entry of chapter 15's list of differences.
#
# ## Paper Figs. 9 and 10: which features each method targets
#
# On the six synthetic SCMs: the share of people for whom each method intervenes on $x_1$, $x_2$, $x_3$.
# The DiCE-VAE's bars are all at 100 %; CARMA and the oracle choose.

# %%
#| export
def plot_targets(reports: dict, # scm -> method -> RecourseReport (as `baseline_table` returns)
                 scms: list[str], # the SCMs to draw, one panel each
                 title: str = ''):
    "Per SCM, % of people each method intervenes on, per actionable feature (paper Figs. 9–10)."
    import matplotlib.pyplot as plt
    missing = [n for n in scms if n not in reports]
    if missing: raise ValueError(f"no reports for {missing}: run baseline_table with these SCMs first")
    fig, axes = plt.subplots(1, len(scms), figsize=(5 * len(scms), 3), squeeze=False)
    for ax, name in zip(axes[0], scms):
        methods = [m for m in ('oracle', 'CARMA', 'DiCE-VAE') if m in reports[name]]
        df = pd.DataFrame({m: reports[name][m].per_feature['intervened %'] for m in methods})
        df.plot.bar(ax=ax, color=[METHOD_COLORS[m] for m in methods], legend=ax is axes[0][0])
        ax.set_title(name); ax.set_xlabel(''); ax.tick_params(axis='x', rotation=0); ax.set_ylim(0, 105)
    axes[0][0].set_ylabel('% of people')
    fig.suptitle(title, y=1.04)
    return fig


# %%
test_fail(lambda: plot_targets(reports, ['nowhere']), contains="no reports for ['nowhere']")
for name in four: test_eq(reports[name]['DiCE-VAE'].per_feature['intervened %'].tolist(), [100.] * 3)

# %%
fig = plot_targets(reports, ['triangle-lin', 'collider-lin', 'chain-lin'],
                   'linear SCMs: % of people acting on each feature (paper Fig. 9)')
save_figure(fig, 'fig9_targets_linear')
plt.show()

# %%
fig = plot_targets(reports, ['triangle-nlin', 'collider-nlin', 'chain-nlin'],
                   'non-linear SCMs: % of people acting on each feature (paper Fig. 10)')
save_figure(fig, 'fig10_targets_nonlinear')
plt.show()

# %%
#| hide
import nbdev; nbdev.nbdev_export()

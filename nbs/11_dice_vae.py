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
# > What amortization without a causal model looks like: cheap to run, but its edits ignore how features
# > depend on each other.
#
# CARMA is not the first amortized recourse method. The DiCE-VAE of Mahajan, Tan & Sharma (2019) also
# trains a network once and answers every person in one pass — but it **edits features directly**:
# a variational autoencoder maps the person $\tilde x$ to a latent code and decodes a change $\Delta$,
# and the counterfactual is $\tilde x' = \tilde x + \Delta \odot m$ with $m = 1$ on every mutable
# feature (`SPEC.md` §10). Nothing propagates along the causal graph.
#
# Its loss mirrors CARMA's, without the mask: the distance $\sum_{j\,\text{mutable}} (\tilde x_j - \tilde x'_j)^2/R_j$
# (averaged like the cost of chapter 5), the KL of the encoder to $\mathcal N(0, I)$, and the same
# damped hinge–multiplier term for validity. At evaluation the latent is the encoder mean.
#
# Two consequences to look for in the results:
#
# - it changes **every** mutable feature for every person (acts = number of mutable features), so its
#   cost is high — the paper reports 2–3× CARMA's;
# - its counterfactual is the edited row itself, so its *coverage* (the classifier accepts the edited
#   row) can be perfect while its **causal validity** — the same values applied as interventions in the
#   true SCM, where descendants respond — is not guaranteed.

# %%
#| export
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from carma_nb.carma import (METHOD_COLORS, TEMPERATURE, StackedMLP, cached_stack, hinge_temperature, masked_mean, mlp,
                            stacked_training, train_carma_seeds, validity_penalty)
from carma_nb.classifier import Classifier
from carma_nb.core import (TRAINER_VERSION, as_features, check_positive, check_seeds, check_whole, get_profile, load_weights,
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
from carma_nb.data import make_pools

# %% [markdown]
# ## Hyperparameters
#
# The paper's Table 4: one hidden layer of 64, lr $5\cdot10^{-5}$, batch 128, 250 epochs (loan 200),
# and a margin per SCM. The profile scales the epochs as it does for CARMA. Its validity hinge sees the
# classifier at the same temperature as CARMA's (chapter 7), so both methods get the same training signal.

# %%
#| export
DICE_MARGIN = {'triangle-lin': 0.003, 'collider-lin': 0.003, 'chain-lin': 0.003, 'collider-nlin': 0.003,
               'triangle-nlin': 0.042, 'chain-nlin': 0.012, 'loan': 0.002}

def dice_hparams(scm: SCM | str, **overrides) -> dict:
    "The paper's DiCE-VAE hyperparameters for `scm` (Table 4), with overrides."
    name = get_scm(scm).name
    hp = dict(lr=5e-5, hidden=64, batch=128, epochs=200 if name == 'loan' else 250, margin=DICE_MARGIN.get(name, 0.003),
              temperature=TEMPERATURE)   # the hinge's classifier temperature, as for CARMA (chapter 7)
    unknown = set(overrides) - set(hp)
    if unknown: raise ValueError(f"unknown DiCE-VAE hyperparameters {sorted(unknown)}; known: {sorted(hp)}")
    hp.update(overrides)
    hp['lr'] = check_positive(hp['lr'], 'lr')
    for k in ('hidden', 'batch', 'epochs'): hp[k] = check_whole(hp[k], k)
    for k in ('margin', 'temperature'): hp[k] = check_positive(hp[k], k, zero=True)
    return hp


# %%
test_eq(dice_hparams('loan')['epochs'], 200)
test_eq(dice_hparams('triangle-nlin')['margin'], 0.042)
test_fail(lambda: dice_hparams('loan', width=3), contains='unknown DiCE-VAE hyperparameters')


# %% [markdown]
# ## The model
#
# The encoder reads the standardised person and outputs the mean and log-variance of a $D$-dimensional
# Gaussian latent; the decoder reads the latent together with the person (a conditional VAE, so the
# change can depend on where the person stands) and outputs $\Delta$. The standardisation is the
# recourse problem's, so distances are measured exactly as in the cost.

# %%
#| export
class DiceVAE(nn.Module):
    "Conditional VAE proposing a direct edit x̃' = x̃ + Δ ⊙ m of the mutable features (no causal propagation)."
    def __init__(self, problem: RecourseProblem, clf: Classifier, hp: dict):
        super().__init__()
        scm = problem.scm
        if clf.scm != scm.name: raise ValueError(f"the classifier is for {clf.scm!r}, not {scm.name!r}")
        D = scm.n_features
        self.scm, self.names, self.hp, self.problem, self.clf = scm.name, scm.names, dict(hp), problem, clf
        self.encoder = mlp([D, hp['hidden'], 2 * D])
        self.decoder = mlp([2 * D, hp['hidden'], D])
        m = torch.zeros(D); m[scm.actionable] = 1.
        self.register_buffer('mutable', m)

    @property
    def n_features(self): return len(self.names)

    def edit(self, x: torch.Tensor, # (n, D) raw features (validated)
             sample: bool = False, # draw the latent (training) instead of using the encoder mean
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        "The edited rows x' (raw), and the encoder's mean and log-variance."
        xt = self.problem.standardise(x)
        mu, logvar = self.encoder(xt).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        xt_new = xt + self.decoder(torch.cat([z, xt], -1)) * self.mutable
        return torch.where(self.mutable.bool(), xt_new * self.problem.std + self.problem.mean, x), mu, logvar

    def recommend(self, x) -> Recommendation:
        "Edits for raw features x (n, D); people already accepted get no edit."
        x = as_features(x, self.n_features, 'x', self.names)
        with torch.inference_mode():
            accepted = self.clf.predict_proba(x, check=False) >= 0.5
            x_new = torch.where(accepted[:, None], x, self.edit(x)[0])
            mask = self.mutable.bool().expand_as(x) & ~accepted[:, None]
            return Recommendation(mask, x_new, x_new, self.clf.predict_proba(x_new, check=False), torch.ones_like(accepted), accepted)

    def __repr__(self): return f"DiceVAE({self.scm!r}, hidden {self.hp['hidden']}, latent {self.n_features})"


# %% [markdown]
# The loss — edit distance, KL, damped hinge — on one batch of one model (the training below computes
# the same for all seeds at once, stacked like CARMA's in chapter 7):

# %%
#| export
def dice_loss(model: DiceVAE, xb: torch.Tensor, lam: float, temperature: float = 1.0) -> tuple[torch.Tensor, dict]:
    "DiCE-VAE's loss on one batch of raw rows (hinge on σ(logit / temperature)), and its parts as floats."
    x_new, mu, logvar = model.edit(xb, sample=True)
    p = torch.sigmoid(model.clf.logits(x_new, check=False) / temperature)
    dist = model.problem.cost(xb, x_new, model.mutable.expand_as(xb)).mean()
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)).mean()
    penalty, g = validity_penalty(p, model.hp['margin'], lam)
    return dist + kl + penalty, {'cost': float(dist.detach()), 'kl': float(kl.detach()), 'hinge': float(g.detach()),
                                 'valid': float((p >= 0.5).float().mean())}

@one_thread()   # models must not depend on the caller's thread count (chapter 0)
def _fit_dice_seeds(problem, clf, pool, hp, seeds, verbose):
    "Train one DiCE-VAE per seed, all at once (stacked, as CARMA in chapter 7); each seed has its own init, order and noise."
    t0 = time.perf_counter()
    with torch.no_grad(): x = rejected(clf, pool.train.x)
    S, N, D, H = len(seeds), len(x), problem.scm.n_features, hp['hidden']
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    enc, dec = StackedMLP([D, H, 2 * D], gens), StackedMLP([2 * D, H, D], gens)
    mutable = torch.zeros(D); mutable[problem.scm.actionable] = 1.
    T = hinge_temperature(clf, x, hp['temperature'])
    def step(idx, lam, keep):
        xb, b = x[idx], idx.shape[1]
        xt = problem.standardise(xb)
        mu, logvar = enc(xt).chunk(2, -1)
        eps = torch.stack([torch.randn(b, D, generator=g) for g in gens])
        xt_new = xt + dec(torch.cat([mu + eps * (0.5 * logvar).exp(), xt], -1)) * mutable
        x_new = torch.where(mutable.bool(), xt_new * problem.std + problem.mean, xb).flatten(0, 1)
        p = torch.sigmoid(clf.logits(x_new, check=False) / T).view(S, b)
        dist = masked_mean(problem.cost(xb.flatten(0, 1), x_new, mutable.expand(S * b, D)).view(S, b), keep)
        kl = masked_mean(0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1), keep)
        penalty, g = validity_penalty(p, hp['margin'], lam, keep)
        return dist + kl + penalty, torch.stack([dist, kl, g, masked_mean((p >= 0.5).float(), keep)]).detach()
    curves = stacked_training(step, [*enc.parameters(), *dec.parameters()], N, gens, hp, f'DiCE-VAE {problem.scm.name}', verbose)
    seconds = (time.perf_counter() - t0) / S
    return [({**enc.member(s, 'encoder'), **dec.member(s, 'decoder'), 'mutable': mutable.clone()}, None,
             {**{f'history_{k}': v[:, s].clone() for k, v in curves.items()}, 'train_seconds': torch.tensor(seconds)})
            for s in range(S)]

def train_dice_vae_seeds(scm: SCM | str, # the SCM
                         clf: Classifier, # its frozen classifier
                         pool: Pool | Pools | None = None, # the recourse pool (default: make_pools(scm).recourse)
                         seeds=(0,), # one model per seed; the missing ones are trained together
                         hparams: dict | None = None, # overrides of dice_hparams
                         profile=None, # scales the epochs (paper: Table 4)
                         cache: bool = True, verbose: bool = True) -> list[DiceVAE]:
    "DiCE-VAE baselines for several seeds, trained on the rejected recourse-training people (SPEC §10)."
    scm = get_scm(scm)
    if clf.scm != scm.name: raise ValueError(f"the classifier was trained for {clf.scm!r}, not {scm.name!r}")
    seeds = check_seeds(seeds)
    pool = resolve_pool(scm, pool, 'recourse')
    hp = dice_hparams(scm, **(hparams or {}))
    if not hparams or 'epochs' not in hparams:
        hp['epochs'] = max(1, round(hp['epochs'] * get_profile(profile).carma_epoch_frac))
    problem = recourse_problem(scm, pool)
    cfgs = [{'kind': 'dice-vae', 'trainer': TRAINER_VERSION, 'dice_trainer': 'stacked-2', 'scm': scm.name, 'hp': hp, 'seed': s,
             'train': split_id(pool.train), 'classifier': getattr(clf, 'config', None)} for s in seeds]
    fit = lambda todo: _fit_dice_seeds(problem, clf, pool, hp, [seeds[i] for i in todo], verbose)
    models = []
    for ck in cached_stack('dice-vae', cfgs, fit, cache):
        model = DiceVAE(problem, clf, ck.config['hp'])
        load_weights(model, ck.state_dict, ck.path or 'a DiCE-VAE checkpoint', skip=('clf.',))   # present, shaped, finite
        model.history = {k.removeprefix('history_'): v for k, v in (ck.extras or {}).items()}
        model.config = ck.config
        model.eval()
        for p in model.parameters(): p.requires_grad_(False)
        models.append(model)
    return models

def train_dice_vae(scm: SCM | str, clf: Classifier, pool: Pool | Pools | None = None, hparams: dict | None = None,
                   profile=None, seed: int = 0, cache: bool = True, verbose: bool = True) -> DiceVAE:
    "Train (or fetch from the cache) one DiCE-VAE (see `train_dice_vae_seeds`)."
    return train_dice_vae_seeds(scm, clf, pool, [seed], hparams, profile, cache, verbose)[0]


# %% [markdown]
# ## On loan
#
# Trained on loan's rejected recourse-training people, then evaluated on the test people with the
# shared evaluation of chapter 5. `x_cf` is the edited row itself: that is what the classifier sees
# for coverage; validity replays the edited values as interventions in the true SCM.

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
# Checks: every mutable feature is edited and nothing else; evaluation is deterministic; people already
# accepted are left alone; gradients reach both networks; bad input is refused.

# %%
loan = get_scm('loan')
test_eq(rec.mask, torch.zeros_like(rec.mask).index_fill_(1, torch.tensor(loan.actionable), True))
test_eq((rec.values != ref.people)[:, loan.immutable + [loan.index('duration')]].any(), torch.tensor(False))
test_eq(dice.recommend(ref.people[:20]).values, dice.recommend(ref.people[:20]).values)
ok = ref.pools.recourse.test.x[ref.clf.predict_proba(ref.pools.recourse.test.x) >= 0.5][:3]
test_eq(dice.recommend(ok).values, ok); test_eq(dice.recommend(ok).mask.any(), torch.tensor(False))
test_fail(lambda: dice.recommend(torch.zeros(2, 3)), contains='3 columns but 7 features')
m = DiceVAE(dice.problem, dice.clf, dice.hp); m.load_state_dict(dice.state_dict())
loss, _ = dice_loss(m, ref.people[:32], 1.0); loss.backward()
assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in [*m.encoder.parameters(), *m.decoder.parameters()] if p.ndim == 2)
test_fail(lambda: train_dice_vae('loan', train_classifier('chain-lin', verbose=False)), contains="trained for 'chain-lin'")
# seeds are trained together (stacked, as CARMA's): a seed trained alone or in a stack gives the same model
alone = train_dice_vae('loan', ref.clf, ref.pools.recourse, hparams={'epochs': 2}, seed=1, cache=False, verbose=False)
both = train_dice_vae_seeds('loan', ref.clf, ref.pools.recourse, seeds=[0, 1], hparams={'epochs': 2}, cache=False, verbose=False)
for k, v in alone.state_dict().items():
    if k.startswith(('encoder', 'decoder')): test_close(both[1].state_dict()[k], v, eps=1e-5)

# %% [markdown]
# ## All seven SCMs: DiCE-VAE vs CARMA vs the oracle
#
# Each method on the same rejected test people; DiCE-VAE and CARMA over the profile's seeds (their
# models come from the model cache when chapter 7 already trained them). The paper's DiCE-VAE costs
# (Table 1) are shown alongside.

# %%
#| export
PAPER_DICE_COST = {'triangle-lin': 33.57, 'collider-lin': 23.98, 'chain-lin': 25.98, 'triangle-nlin': 24.91,
                   'collider-nlin': 8.74, 'chain-nlin': 21.46, 'loan': 13.32}   # paper Table 1: references, never results

def baseline_table(profile=None, scms=SCM_NAMES, seed0: int = 0, verbose: bool = False) -> tuple[pd.DataFrame, dict]:
    "DiCE-VAE, CARMA and the oracle per SCM (means over seeds), and each SCM's first-seed reports for the figures."
    p = get_profile(profile)
    rows, reports = [], {}
    for name in scms:
        ref = oracle_reference(name, p)
        flow = fit_flow(name, ref.pools.causal, p, verbose=False)
        seeds = range(seed0, seed0 + p.seeds)
        per = {'DiCE-VAE': [], 'CARMA': []}
        for method, models in (('DiCE-VAE', train_dice_vae_seeds(name, ref.clf, ref.pools.recourse, seeds, profile=p, verbose=verbose)),
                               ('CARMA', train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, seeds, profile=p, verbose=verbose))):
            for s, model in zip(seeds, models):
                r = model.recommend(ref.people)
                rep = evaluate_recourse(ref.problem, ref.clf, ref.people, r)
                per[method].append(rep.metrics)
                if s == seed0: reports.setdefault(name, {})[method] = rep
        reports[name]['oracle'] = evaluate_recourse(ref.problem, ref.clf, ref.people, ref.result)
        row = {'scm': name, 'seeds': p.seeds, 'people': len(ref.people), 'oracle cost x100': ref.metrics['cost x100']}
        for method, ms in per.items():
            df = pd.DataFrame(ms)
            row.update({f'{method} cost x100': df['cost x100'].mean(), f'{method} coverage %': df['coverage %'].mean(),
                        f'{method} validity %': df['validity %'].mean(), f'{method} acts': df['acts'].mean(),
                        f'{method} prob': df['prob'].mean()})
        row['paper DiCE-VAE cost x100'] = PAPER_DICE_COST.get(name, np.nan)
        rows.append(row)
    df = pd.DataFrame(rows).set_index('scm')
    df['DiCE-VAE / CARMA cost'] = df['DiCE-VAE cost x100'] / df['CARMA cost x100']
    return df, reports


# %%
table, reports = baseline_table(profile)
save_table(table.round(3), 'dice_vae_table')
print(f'profile: {profile.name} ({profile.seeds} seeds)')
table.round(2)

# %%
n_mutable = [len(get_scm(n).actionable) for n in table.index]
test_close(table['DiCE-VAE acts'].to_numpy(), np.array(n_mutable, dtype=float), eps=1e-9)   # every mutable feature, every person


# %% [markdown]
# The DiCE-VAE acts on every mutable feature (3 on the 4-node SCMs, 4 on loan), so its cost is a sum
# over all of them. Its coverage is measured on the edited row; where its causal validity falls below
# its coverage, the difference is exactly the people for whom ignoring the causal graph went wrong:
# the edit looked acceptable, but performing it in the world moves the descendants as well.

# %% [markdown]
# ## Paper Figs. 9 and 10: which features each method targets
#
# On the six synthetic SCMs: the share of people for whom each method intervenes on $x_1$, $x_2$, $x_3$.

# %%
#| export
def plot_targets(reports: dict, # scm -> method -> RecourseReport
                 scms: list[str], title: str = ''):
    "Per SCM, % of people each method intervenes on, per actionable feature (paper Figs. 9–10)."
    import matplotlib.pyplot as plt
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
fig = plot_targets(reports, ['triangle-lin', 'collider-lin', 'chain-lin'], 'linear SCMs: % of people acting on each feature (paper Fig. 9)')
save_figure(fig, 'fig9_targets_linear')
plt.show()

# %%
fig = plot_targets(reports, ['triangle-nlin', 'collider-nlin', 'chain-nlin'], 'non-linear SCMs: % of people acting on each feature (paper Fig. 10)')
save_figure(fig, 'fig10_targets_nonlinear')
plt.show()

# %%
#| hide
import nbdev; nbdev.nbdev_export()

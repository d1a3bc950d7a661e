# %%
#| default_exp improved

# %% [markdown]
# # Beyond the paper: an improved recipe for CARMA
#
# > Our changes to CARMA's training, each explained once, switched on together by one named recipe,
# > and measured against the paper's algorithm in one ablation table.
#
# Chapter 8 trains CARMA exactly as the paper does. Trained that way, CARMA leaves cost on the table on
# several SCMs, and some of its seeds fail; each change below targets one cause:
#
# | change | what it does | why |
# |---|---|---|
# | **candidates** | trains several models per seed, keeps the best on its own training people | some runs settle in a poor mask |
# | **tempered hinge** | the hinge sees σ(logit / T) | a very confident classifier gives the hinge no gradient |
# | **wider clamp** | the latent shift may be twice the paper's range | some people need larger shifts than the clamp allows |
# | **mask refinement** | an extra phase teaches the mask network each person's cheapest valid mask | the mask network learns a mask only through the masks it samples |
# | **polishing** | an extra phase fits the amounts to the masks the model will serve | amounts hedge against sampled masks never served |
# | **margin** | a wider hinge margin ε (0.03) | flow errors push a borderline counterfactual back across |
# | **no idle acts** | acts whose latent shift is (almost) zero are not served | such an act changes nothing, yet the person is told to do it |
#
# All of them change only how the networks are trained or what is served; the model, its loss and
# one-pass serving stay chapters 7 and 8's. They are bundled as `recipe='improved'` (per SCM, the settings
# chosen on validation people), and the ablation at the end trains every SCM with the paper's recipe,
# with each change alone, and with all of them, on the same seeds and people.

# %%
#| export
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F

from carma_nb.training import (PHASES, RECIPES, Batch, CarmaOptions, Recipe, StackedMLP, TrainingState,
                               carma_loss, served_masks, stacked_outcome, stacked_training, aligned,
                               masked_mean, train_carma_seeds)
from carma_nb.core import get_profile, check_positive
from carma_nb.data import make_pools
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference
from carma_nb.recourse import evaluate_recourse, recourse_problem
from carma_nb.scm import SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt
from carma_nb.classifier import train_classifier
from carma_nb.core import save_figure, save_table


# %% [markdown]
# ## Candidates: keep the best of several runs
#
# Some training runs end far worse than others: on chain-lin, the paper's ten seeds cost 18.0 (×100) on
# average with a spread of 15.6, and one seed's recommendations are valid for only 95 % of the people.
# Such runs are easy to spot on the *training* people: their cost is higher, or their validity under the
# flow lower. So
# the trainer of chapter 8 can train `candidates` models per seed (stacked like the seeds, each with its
# own random seed) and keep, per seed, the one with the lowest cost + (1 − validity under the causal
# model) on its training people, with deterministic masks. No validation or test person is involved,
# and a model's training time includes its discarded candidates.
#
# ## A tempered hinge
#
# The hinge pushes only through $\partial p/\partial x$. Where a classifier is very confident about
# the rejected people (logits far below 0), $p = \sigma(\text{logit})$ and its gradient are zero to
# machine precision, the action network gets a signal only from the few people near the boundary,
# and it learns to over-shoot for everyone. With `temperature` > 0 the hinge sees
# $p_T = \sigma(\text{logit}/T)$, $T = \max(1, \texttt{temperature} \cdot \mathrm{median}|\text{logit}|)$
# over the rejected training people. Dividing a logit by $T > 0$ never changes its sign, so every
# decision, the validity and the evaluation stay the classifier's. But the hinge is zero only once
# $\sigma(\text{logit}/T) \ge (1+\varepsilon)/2$: it now asks for a logit $T$ times further past the
# boundary, so tempering also pushes counterfactuals further out (and may act on more features).
#
# ## A wider clamp
#
# The paper clamps the latent shift to $[\lfloor\min Z\rfloor, \lceil\max Z\rceil]$ of the training
# latents — about $[-4, 4]$ for a flow with a standard-normal base. On chain-nlin some people need
# larger shifts: stuck at the clamp, where it passes no gradient, their action stays invalid under the
# flow itself. `shift_scale` multiplies the range.
#
# ## A wider margin
#
# The hinge margin ε of Table 5 asks the classifier for $p \ge (1+\varepsilon)/2$ under the *flow*; a
# counterfactual that barely clears it can fall back across the boundary in the true SCM, where the flow
# is slightly wrong. `margin` replaces Table 5's ε (triangle-nlin's recipe uses 0.03).
#
# These four act inside chapter 8's trainer (its `Recipe` fields `candidates`, `temperature`,
# `shift_scale`, `margin`). The next two are extra training phases after the main loop, registered here;
# the last, `idle_tol`, only changes what is served.

# %% [markdown]
# ## Mask refinement
#
# The mask network learns its choice only through the straight-through gradient of the masks it
# happens to sample, and the action network is trained only on those masks, so a mask that is rarely
# sampled gets poor amounts and stays unchosen — even where it would be the cheapest. The `refine`
# phase, on the training people and the causal model alone:
#
# 1. *every mask's amounts*: the action network trains on masks drawn uniformly from all $2^K - 1$
#    non-empty subsets of the $K$ actionable features (cost + hinge; the loss holds λ at its
#    end-of-training value, since some masks can never be made valid and their hinge would inflate it —
#    the phase's λ curve still records that inflated value, and polishing starts from it);
# 2. *labels*: each person is tried with every mask, with the action network's amounts, and the
#    cheapest whose counterfactual is accepted becomes the person's label (with a preference prior,
#    the prior's term $-\sum_j \log \mathrm{Bernoulli}(a_j; \pi_j)$ is added to the cost);
# 3. *the mask network learns the labels* (binary cross-entropy per actionable feature).
#
# Serving is unchanged: one forward pass, no search; the enumeration is a training-time cost.

# %%
#| export
def mask_subsets(act: torch.Tensor, # (D,) 1 on actionable features
                ) -> torch.Tensor:
    "Every non-empty subset of the actionable features as a mask, (2^K − 1, D) for K actionable features."
    idx = act.nonzero().flatten()
    K = len(idx)
    if not 1 <= K <= 10:
        raise ValueError(f"mask refinement enumerates the 2^K − 1 masks of K actionable features "
                         f"and needs 1 ≤ K ≤ 10, got K = {K}")
    bits = (torch.arange(1, 2 ** K)[:, None] >> torch.arange(K)) & 1
    out = torch.zeros(2 ** K - 1, len(act))
    out[:, idx] = bits.to(out.dtype)
    return out

def mask_penalty(cands: torch.Tensor, # (M, D) candidate masks
                 prior: torch.Tensor, # (D,) prior probability of intervening π_j
                 act: torch.Tensor, # (D,) 1 on actionable features
                ) -> torch.Tensor:
    ("The mask prior's term at each mask, −Σ_actionable log Bernoulli(a_j; π_j), less its minimum: (M,), "
     "0 for π = ½.")
    pen = -(torch.where(cands.bool(), torch.log(prior), torch.log1p(-prior)) * act).sum(-1)
    return pen - pen.min()

def cheapest_valid_masks(st: TrainingState, cands: torch.Tensor, # (M, D) candidate masks
                         fallback: torch.Tensor, # (S, N, D) the mask kept where no candidate is valid
                         penalty: torch.Tensor, # (M,) added to each mask's cost
                        ) -> torch.Tensor:
    ("Per stacked model and training person, the valid candidate mask (amounts from the action network) "
     "of least cost + penalty.")
    S, N = fallback.shape[:2]
    pos, _ = aligned(N)                     # padded like a training batch; the padding is cut off at the end
    xs, zs = st.x[pos].expand(S, len(pos), -1), st.z[pos].expand(S, len(pos), -1)
    best_cost, best = torch.full((S, len(pos)), torch.inf), fallback[:, pos].clone()
    with torch.no_grad():
        # one pass per mask (at most 2^10 − 1), batched over models and people
        for m, pen in zip(cands, penalty):
            cost, logit = stacked_outcome(st.ctx, st.action_net, xs, zs, m.expand(S, len(pos), -1))
            better = (logit >= 0) & (cost + pen < best_cost)   # ties keep the earlier, smaller mask
            best_cost = torch.where(better, cost + pen, best_cost)
            best = torch.where(better[..., None], m, best)
    return best[:, :N]

def refine_phase(st: TrainingState, epochs: int) -> dict:
    ("Mask refinement: every mask's amounts, each person's cheapest valid mask, "
     "the mask network learns them; curves.")
    act, D, S = st.ctx.act, st.x.shape[1], len(st.gens)
    cands, lam = mask_subsets(act), st.curves['lambda'][-1]
    hp = {'lr': st.hp['lr'], 'epochs': epochs, 'batch': st.hp['batch']}
    def every_mask(idx, _, keep):
        a = cands[torch.stack([torch.randint(len(cands), (idx.shape[1],), generator=g) for g in st.gens])]
        loss, parts = carma_loss(st.ctx, None, st.action_net, Batch(st.x[idx], st.z[idx], keep), lam, a=a)
        return loss, parts
    more = stacked_training(every_mask, list(st.action_net.parameters()), len(st.x), st.gens, hp,
                            st.desc and f'{st.desc} every mask', lam0=lam)
    labels = cheapest_valid_masks(st, cands, served_masks(st.mask_net, st.z, act),
                                  mask_penalty(cands, st.ctx.prior, act))
    rows, zero = torch.arange(S)[:, None], torch.zeros(S)
    def learn_labels(idx, _, keep):
        d = st.mask_net(st.z[idx]).unflatten(-1, (D, 2)).diff(dim=-1).squeeze(-1)   # "intervene" minus "keep"
        bce = masked_mean((F.binary_cross_entropy_with_logits(d, labels[rows, idx], reduction='none') * act)
                          .sum(-1), keep)
        return bce, torch.stack([bce, zero, zero, zero]).detach()
    stacked_training(learn_labels, list(st.mask_net.parameters()), len(st.x), st.gens, hp,
                     st.desc and f'{st.desc} mask labels', lam0=lam)
    return more

PHASES['refine'] = refine_phase

# %%
act_loan = torch.tensor([0., 0, 1, 1, 0, 1, 1])
ms = mask_subsets(act_loan)
test_eq(ms.shape, (15, 7)); test_eq(len({tuple(r) for r in ms.tolist()}), 15)
test_eq(ms[:, [0, 1, 4]].abs().sum(), 0); test_eq(bool((ms.sum(-1) >= 1).all()), True)
test_fail(lambda: mask_subsets(torch.zeros(4)), contains='needs 1 ≤ K ≤ 10')
# the uniform prior favours no mask
test_eq(mask_penalty(ms, torch.full((7,), 0.5), act_loan), torch.zeros(15))
pen = mask_penalty(ms, 1 / (2 * torch.tensor([1., 1, 3, 2, 1, 2, 1])), act_loan)
# all four: odds 1:5 and twice 1:3
test_close(float(pen.max()), math.log(5) + 2 * math.log(3), eps=1e-5)

# %% [markdown]
# ## Polishing
#
# During training the masks are Gumbel samples; when serving they are the deterministic argmax. The
# action network therefore learns amounts that hedge against masks it will never be served with, and
# over-shoots: the classifier's probability for its counterfactuals sits well above 0.5 where the
# cheapest valid action stops just above it. The `polish` phase freezes the mask network at the
# masks it will serve and trains the action network alone for a few more epochs: the same loss without
# the mask term (which no longer depends on anything being trained), a smaller learning rate
# (`POLISH_LR`), the multiplier λ continuing from where it was.

# %%
#| export
POLISH_LR = 1e-4   # learning rate of the polishing phase

def polish_phase(st: TrainingState, epochs: int) -> dict:
    "Polishing: the action network alone, on the deterministic masks the model will serve; curves."
    with torch.no_grad(): a_det = served_masks(st.mask_net, st.z, st.ctx.act)       # (S, N, D)
    rows = torch.arange(len(st.gens))[:, None]
    def step(idx, lam, keep):
        batch = Batch(st.x[idx], st.z[idx], keep)
        return carma_loss(st.ctx, None, st.action_net, batch, lam, a=a_det[rows, idx])
    return stacked_training(step, list(st.action_net.parameters()), len(st.x), st.gens,
                            {'lr': POLISH_LR, 'epochs': epochs, 'batch': st.hp['batch']},
                            st.desc and f'{st.desc} polish', lam0=st.curves['lambda'][-1])

PHASES['polish'] = polish_phase


# %% [markdown]
# ## No idle acts
#
# Nothing stops the mask network from choosing a feature the action network then leaves alone: with
# the flat prior π = ½ the mask term does not care, so the mask may sit at a coin flip for it. In the
# latent-shift form an act with $\delta_j = 0$ changes nothing (the feature follows its parents, as it
# would have), yet the recommendation lists it, with the value the feature takes anyway — and the cost
# charges it for a change its parents would bring for free. With `idle_tol`, serving leaves out acts
# whose latent shift is below it (in units of the standard-normal latent) wherever the person stays
# accepted without them, or their probability does not fall (chapter 7's `recommend`). `idle_acts`
# counts them.

# %%
#| export
def idle_acts(model, # a trained CARMA
              x: torch.Tensor, # (n, D) raw features
              tol: float = 0.05, # an act is idle when its latent shift is smaller than this
             ) -> tuple[torch.Tensor, torch.Tensor]:
    ("The served mask (n, D) bool (every act), and which of its acts are idle (latent shift below `tol`), "
     "(n, D) bool.")
    check_positive(tol, 'tol')
    prog = model.program
    x = x.float().numpy() if isinstance(x, torch.Tensor) else x
    accepted = prog.prob(x) >= 0.5
    a, delta = prog.act(prog.causal.abduct(x)[0], accepted)
    mask = torch.from_numpy(a.astype(bool))
    norms = torch.from_numpy(delta).unflatten(-1, (model.n_features, -1)).norm(dim=-1)
    return mask, mask & (norms < tol)


# %% [markdown]
# ## The recipe
#
# The settings below were chosen per SCM on the **validation** people (never the test people), one
# change at a time; the sweeps that chose them are in the study `studies/carma_additions.ipynb`.
# `recipe='improved'` picks an SCM's row; a world of one's own gets `IMPROVED_GENERIC`. Two more rows
# serve loan with preference weights (chapter 10) and with VACA as the causal model (chapter 11).

# %%
#| export
_REFINE_POLISH = (('refine', 300), ('polish', 150))
IMPROVED: dict[str, Recipe] = {
    'triangle-lin':  Recipe('improved', candidates=6, temperature=4, phases=_REFINE_POLISH, idle_tol=0.05),
    'collider-lin':  Recipe('improved', candidates=3, temperature=4, phases=_REFINE_POLISH, idle_tol=0.05),
    'chain-lin':     Recipe('improved', candidates=6, temperature=1, phases=_REFINE_POLISH, idle_tol=0.05),
    'triangle-nlin': Recipe('improved', candidates=6, temperature=1, shift_scale=2, margin=0.03,
                            phases=_REFINE_POLISH, idle_tol=0.05),
    'collider-nlin': Recipe('improved', candidates=6, temperature=1, phases=(('polish', 150),),
                            idle_tol=0.05),
    'chain-nlin':    Recipe('improved', candidates=3, temperature=1, shift_scale=2, phases=(('polish', 150),),
                            idle_tol=0.05),
    'loan':          Recipe('improved', candidates=1, temperature=4, phases=(('polish', 150),),
                            idle_tol=0.05),
    'loan-weighted': Recipe('improved', candidates=3, temperature=4, phases=(('polish', 150),),
                            idle_tol=0.05),
    'loan-vaca':     Recipe('improved', candidates=3, temperature=4, margin=0.03, idle_tol=0.05),
}
IMPROVED_GENERIC = Recipe('improved', candidates=3, temperature=1, phases=(('polish', 150),), idle_tol=0.05)

def improved_recipe(scm: str, variant: str | None = None) -> Recipe:
    "The improved recipe's settings for `scm` (and loan's weighted or VACA row)."
    name = get_scm(scm).name
    key = f'{name}-{variant}' if variant else name
    return IMPROVED.get(key, IMPROVED.get(name, IMPROVED_GENERIC) if not variant
                        else IMPROVED.get(f'loan-{variant}'))

RECIPES['improved'] = improved_recipe

# %%
test_eq(improved_recipe('loan').phases, (('polish', 150),))
test_eq(improved_recipe('loan', 'vaca').margin, 0.03)
test_eq(improved_recipe('chain-nlin').shift_scale, 2)


# %% [markdown]
# ## The ablation
#
# Per SCM, the same seeds trained with the paper's recipe, with each change alone, and with the whole
# improved recipe; every model evaluated on the same rejected test people (chapter 5's evaluation:
# cost, causal validity in the true SCM, acts). A change "alone" is the paper's recipe with that one
# field of the SCM's improved recipe (refinement alone polishes nothing; dropping idle acts alone is
# the paper's model served without them). The one change that earns nothing alone, the margin, is also
# checked the other way round: the improved recipe without it.

# %%
#| export
def ablation_recipes(scm: str) -> dict[str, Recipe]:
    ("The recipes of the ablation for `scm`: the paper's, each change of the improved recipe alone, "
     "all of them, and all but the margin where it is used.")
    full, paper = improved_recipe(scm), Recipe()
    alone = {'candidates': replace(paper, candidates=full.candidates),
             'tempered hinge': replace(paper, temperature=full.temperature),
             'wider clamp': replace(paper, shift_scale=full.shift_scale),
             'refinement': replace(paper, phases=tuple(p for p in full.phases if p[0] == 'refine')),
             'polishing': replace(paper, phases=tuple(p for p in full.phases if p[0] == 'polish')),
             'margin': replace(paper, margin=full.margin),
             'no idle acts': replace(paper, idle_tol=full.idle_tol)}
    out = {'paper': paper}
    # the changes this SCM uses; one that only changes serving keeps the paper's name, so that it
    # serves the paper's trained models instead of training them again
    out.update({k: r if r.config() == paper.config() else replace(r, name=f'paper + {k}')
                for k, r in alone.items() if r != paper})
    out['improved'] = full
    if full.margin is not None: out['improved − margin'] = replace(full, margin=None)
    return out

def ablation_table(profile=None, scms=SCM_NAMES, verbose: bool = False) -> pd.DataFrame:
    ("Cost ×100, validity % and acts (means over the profile's seeds, and the worst seed's validity) "
     "per SCM and recipe.")
    p, rows = get_profile(profile), []
    for name in scms:
        ref = oracle_reference(name, p)
        flow = fit_flow(name, ref.pools.causal, p, verbose=False)
        for label, recipe in ablation_recipes(name).items():
            models = train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, range(p.seeds),
                                       CarmaOptions(recipe=recipe, profile=p, verbose=verbose))
            m = pd.DataFrame([evaluate_recourse(ref.problem, ref.clf, ref.people,
                                                mo.recommend(ref.people)).metrics for mo in models])
            rows.append({'scm': name, 'recipe': label, 'seeds': len(models),
                         'cost x100': m['cost x100'].mean(), 'cost std': m['cost x100'].std(),
                         'validity %': m['validity %'].mean(),
                         'worst validity %': m['validity %'].min(), 'acts': m['acts'].mean(),
                         'oracle cost x100': ref.metrics['cost x100']})
    return pd.DataFrame(rows).set_index(['scm', 'recipe'])


# %%
# loan's changes
test_eq(list(ablation_recipes('loan')), ['paper', 'tempered hinge', 'polishing', 'no idle acts', 'improved'])
test_eq(ablation_recipes('loan')['paper'], Recipe())
test_eq(ablation_recipes('triangle-nlin')['wider clamp'].shift_scale, 2)
test_eq(ablation_recipes('triangle-nlin')['improved − margin'],
        replace(improved_recipe('triangle-nlin'), margin=None))

# %% [markdown]
# At the quick profile (what the tests run) the ablation covers two SCMs; at the paper profile, all seven
# with ten seeds each.

# %%
profile = get_profile()
table = ablation_table(profile, SCM_NAMES if profile.name == 'paper' else ('chain-lin', 'loan'))
save_table(table.round(3), 'ablation_improved_recipe')
table.round(3)

# %% [markdown]
# The same table as a picture: each recipe's cost relative to the paper's recipe on the same SCM (below 1:
# cheaper), annotated with its causal validity (%). An empty cell is a change the SCM's improved recipe
# does not use.

# %%
import seaborn as sns
order = [r for r in ('paper', 'candidates', 'tempered hinge', 'wider clamp', 'refinement', 'polishing',
                     'margin', 'no idle acts', 'improved', 'improved − margin')
         if r in set(table.index.get_level_values('recipe'))]
paper_cost = table.xs('paper', level='recipe')['cost x100']
rows = [n for n in SCM_NAMES if n in paper_cost.index]                        # the SCMs in their usual order
ratio = (table['cost x100'].unstack('recipe').loc[rows, order].T / paper_cost).T
validity = table['validity %'].unstack('recipe').loc[rows, order]
fig, ax = plt.subplots(figsize=(1.2 * len(order) + 2, 0.5 * len(ratio) + 1.2))
text = (ratio.map(lambda v: f'{v:.2f}' if v == v else '') + '\n'
        + validity.map(lambda v: f'{v:.1f} %' if v == v else ''))
sns.heatmap(ratio, annot=text, fmt='', cmap='RdYlGn_r', center=1, vmin=0.3, vmax=1.7,
            cbar_kws={'label': 'cost / paper recipe'}, ax=ax, annot_kws={'fontsize': 8})
ax.tick_params(axis='x', rotation=30)
ax.set_xlabel(''); ax.set_ylabel('')
ax.set_title(f'Each change alone, all together, and all but the margin: cost relative to the paper\'s '
             f'recipe, and validity ({profile.name} profile, {profile.seeds} seeds)', fontsize=10)
save_figure(fig, 'ablation_cost_ratio')
plt.show()

# %% [markdown]
# **What the ablation shows** (paper profile, ten seeds; the cell below checks each number quoted here):
#
# - **Several candidates per seed** make every SCM that uses them cheaper (0.47–0.89× the paper's cost)
#   and lift the failing seeds: the worst seed on triangle-nlin from 79.4 % to 99.3 % valid, on chain-lin
#   from 95.1 % to 99.5 %.
# - **Polishing alone** is cheaper on every SCM but less valid on every one (collider-lin 94.9 %): it fits
#   the amounts to the served masks and so gives up the hedge that kept borderline people valid. Inside
#   the full recipe the candidates' selection can reject polished models that lost validity.
# - **Refinement** lowers the number of acts wherever it is used (chain-lin 2.45 → 1.08), at a lower cost
#   on two of its four SCMs.
# - **The tempered hinge** is cheaper on five SCMs and dearer on triangle-lin and collider-lin; on
#   triangle-lin it also costs validity (98.1 %, one seed at 81.2 %).
# - **The wider clamp** (triangle-nlin, chain-nlin) and **the margin** (triangle-nlin) barely lower the
#   cost or raise it (0.99×, 1.13× and 1.15×); the wider clamp removes triangle-nlin's failing seed
#   (worst 99.95 %), the margin alone keeps it (79.4 %).
# - **No idle acts** removes acts at the paper's cost and validity (within 1.5 % and 0.05 points).
# - **All together** the improved recipe is the cheapest recipe with validity ≥ 99.5 % on every SCM
#   (0.35–0.81× the paper's cost), with a seed-to-seed spread of at most 0.11 (×100). It is also cheaper
#   than chapter 6's oracle on six SCMs (chain-nlin is the exception): the oracle searches a grid of
#   amounts, CARMA chooses them freely. It still pays 1.02–1.45 times the true optimum of chapter 6b;
#   chapter 15 measures that gap and what it pays for.
#
# - **The margin earns its place only inside the full recipe.** Without it, triangle-nlin's improved
#   recipe is a little cheaper (4.59 against 4.81, ×100) but valid for 99.25 % of people instead of
#   99.99 % (worst seed 98.6 %), below the 99.5 % every improved model reaches.

# %%
no_idle, paper_ = (table.xs(r, level='recipe') for r in ('no idle acts', 'paper'))
assert (no_idle['acts'] <= paper_['acts'] + 1e-9).all()                      # dropping acts only removes acts
if profile.name == 'paper':
    ratio_of = lambda r: (table.xs(r, level='recipe')['cost x100'] / paper_['cost x100']).dropna()
    valid_of = lambda r: table.xs(r, level='recipe')['validity %']
    worst = table['worst validity %'].round(1)
    span = lambda r: (round(ratio_of(r).min(), 2), round(ratio_of(r).max(), 2))
    test_eq(span('candidates'), (0.47, 0.89))
    test_eq([worst[(n, r)] for n in ('triangle-nlin', 'chain-lin') for r in ('paper', 'candidates')],
            [79.4, 99.3, 95.1, 99.5])
    assert (ratio_of('polishing') < 1).all() and (valid_of('polishing') < paper_['validity %']).all()
    test_eq(round(valid_of('polishing')['collider-lin'], 1), 94.9)
    refined = table.xs('refinement', level='recipe')
    assert (refined['acts'] < paper_.loc[refined.index, 'acts']).all()
    assert (ratio_of('refinement') < 1).sum() == 2
    test_eq([round(t.loc['chain-lin', 'acts'], 2) for t in (paper_, refined)], [2.45, 1.08])
    assert set(ratio_of('tempered hinge')[lambda r: r > 1].index) == {'triangle-lin', 'collider-lin'}
    test_eq((round(valid_of('tempered hinge')['triangle-lin'], 1), worst[('triangle-lin', 'tempered hinge')]),
            (98.1, 81.2))
    test_eq(sorted(round(v, 2) for r in ('wider clamp', 'margin') for v in ratio_of(r)), [0.99, 1.13, 1.15])
    assert worst[('triangle-nlin', 'wider clamp')] >= 99.9 and worst[('triangle-nlin', 'margin')] == 79.4
    assert (ratio_of('no idle acts').sub(1).abs() < 0.015).all()
    assert (valid_of('no idle acts') - paper_['validity %']).abs().max() < 0.05
    ok = table[table['validity %'] >= 99.5]['cost x100'].unstack('recipe')
    test_eq(list(ok.idxmin(axis=1).unique()), ['improved'])
    test_eq(span('improved'), (0.35, 0.81)); assert (valid_of('improved') >= 99.5).all()
    assert (table.xs('improved', level='recipe')['cost std'] <= 0.11).all()
    cheaper = table.xs('improved', level='recipe').eval('`cost x100` < `oracle cost x100`')
    test_eq(list(cheaper[~cheaper].index), ['chain-nlin'])
    no_margin, full_ = (table.loc[('triangle-nlin', r)] for r in ('improved − margin', 'improved'))
    test_eq([round(t['cost x100'], 2) for t in (no_margin, full_)], [4.59, 4.81])
    test_eq([round(t['validity %'], 2) for t in (no_margin, full_)], [99.25, 99.99])
    test_eq(round(no_margin['worst validity %'], 1), 98.6)

# %%
#| hide
import nbdev; nbdev.nbdev_export()

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
#| default_exp paper

# %% [markdown]
# # The paper, reproduced
#
# > Table 1, Table 7 and every figure of the paper from one run of the experiment runner, our numbers
# > next to the paper's, and what differs and why.
#
# This chapter reads the tidy results of chapter 12 (running whatever jobs are missing, reusing every
# cached model) and turns them into the paper's tables and figures. At the quick profile — what
# `nbdev_test` runs — the numbers are small-budget stand-ins; the committed `figures/` come from
# `carma-nb reproduce --profile paper`.

# %%
#| export
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from carma_nb.carma import plot_feature_use, plot_shifts, train_carma_seeds
from carma_nb.core import get_profile
from carma_nb.dice_vae import plot_targets, train_dice_vae_seeds
from carma_nb.experiments import ABLATION_FRACTIONS, run_experiments, table1
from carma_nb.flow import fit_flow
from carma_nb.oracle import cached_oracle, loop_seconds_per_person, oracle_recourse, oracle_reference
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS, PAPER_TABLE7
from carma_nb.recourse import evaluate_recourse, recourse_problem
from carma_nb.scm import SCM_NAMES, get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt
from carma_nb.core import save_figure, save_table
from carma_nb.carma import carma_table

# %% [markdown]
# ## The results
#
# One row per SCM, method and seed (and training fraction for the ablation).

# %%
profile = get_profile()
t0 = time.perf_counter()
results = run_experiments(profile, jobs=1, verbose=False)
print(f'{len(results)} result rows ({profile.name} profile, {profile.seeds} seeds) in {time.perf_counter() - t0:.0f} s')
results.groupby(['scm', 'method']).size().unstack(fill_value=0)

# %% [markdown]
# ## Table 1
#
# Our oracle, DiCE-VAE and CARMA (mean and standard deviation over seeds) on every SCM, with the paper's
# values in the `paper …` columns. Times: the paper timed its oracle and CARMA one person at a time on
# its own CPU; our oracle is timed batched over all people (its natural mode), CARMA both ways.

# %%
t1 = table1(results)
save_table(t1.round(3), 'table1')
cols = ['oracle cost x100', 'paper oracle cost x100', 'CARMA cost x100', 'CARMA cost std', 'paper CARMA cost x100',
        'CARMA / oracle cost', 'CARMA validity %', 'CARMA validity min %', 'paper CARMA validity %', 'CARMA acts', 'paper CARMA acts',
        'DiCE-VAE cost x100', 'paper DiCE-VAE cost x100', 'oracle ms (batched)', 'CARMA ms (batch size 1)', 'CARMA µs (batched)']
t1[[c for c in cols if c in t1]].round(2)

# %% [markdown]
# **Reading it.** Seven differences with the paper are worth knowing before comparing numbers:
#
# 1. *Our classifiers are sharper.* SPEC §3 trains them with Adam; the original code used plain SGD at
#    the same learning rate, which stops far from convergence. Ours reach 98.6–99.9 % validation
#    accuracy where the original work reports 91–99 %; retrained with SGD, five of seven land within
#    0.7 points of the original numbers (chapter 3). A sharper classifier draws a crisper boundary, so
#    the oracle's cheapest valid action is cheaper than the paper's on most SCMs, and every method's
#    post-recourse probability is higher.
# 2. *The sharpness changes CARMA's training signal.* The rejected training people of loan have a median
#    classifier logit around −70 (the SGD classifier's: −2.8): the probability and its gradient are zero
#    to machine precision, so the paper's hinge on $p$ gives the action network nothing to follow except
#    through the few people near the boundary, and it learns a blanket over-shoot. We let the hinge see the classifier at a
#    temperature $T$ (chapter 7), which leaves every decision ($p \ge 0.5$) unchanged and restores the
#    gradient. This is our addition, stated wherever CARMA's results appear.
# 3. *Times are measured differently* (above): batched oracle time per person is not the paper's
#    one-at-a-time loop.
# 4. *Two more settings differ from the paper's Table 5*, each chosen on validation people
#    (chapters 7 and 10): the shift clamp is twice as wide on chain-nlin and triangle-nlin, and CARMA
#    with VACA uses the hinge margin 0.03 instead of 0.003.
# 5. *Restarts* (chapter 7): each CARMA seed trains three candidates — six on triangle-lin, triangle-nlin,
#    chain-lin and collider-nlin, where the seeds varied most, one on loan — and keeps the one with the lowest cost + share
#    invalid on its own training people; the paper trains one. Times include the discarded candidates.
# 6. *Polishing* (chapter 7): after the main training, each model's action network trains 150 more
#    epochs alone with the masks frozen at the deterministic ones it will serve, which removes most of
#    the amortized over-shoot (cost / oracle fell by 0.05–0.3 on the validation people of every SCM).
#    Not in the paper; the VACA variant of loan trains without it.
# 7. *Mask refinement* (chapter 7), on triangle-lin, triangle-nlin, collider-lin and chain-lin: between the main
#    training and polishing, the action network learns amounts for every mask, each training person is
#    labelled with the cheapest mask that is valid under the flow, and the mask network learns those
#    labels. Serving stays one forward pass. Not in the paper; chosen on validation people, where it cut
#    cost / oracle by 0.12–0.30 on those four SCMs, tied on collider-nlin and lost on loan.

# %%
assert (t1['CARMA validity %'] > 80).all() and (t1['oracle cost x100'] > 0).all()


# %% [markdown]
# ## Table 7: population preferences (loan)

# %%
#| export
def table7(results: pd.DataFrame) -> pd.DataFrame:
    "Unweighted vs weighted CARMA and the weighted oracle on loan, from a results table; the paper's values alongside."
    r = results[(results['scm'] == 'loan') & (results['fraction'] == 1.0)]
    names = {'carma': 'CARMA', 'carma-weighted': 'CARMA (weighted)', 'oracle-weighted': 'oracle (weighted)', 'oracle': 'oracle'}
    rows = []
    for m, label in names.items():
        d = r[r['method'] == m]
        if not len(d): continue
        # the oracle is deterministic: one run
        rows.append({'method': label, 'seeds': max(1, int(d['seed'].notna().sum())), 'cost x100 (own objective)': d['cost x100'].mean(),
                     'cost std': d['cost x100'].std(), 'validity %': d['validity %'].mean(), 'acts': d['acts'].mean()})
    return pd.DataFrame(rows).set_index('method').join(PAPER_TABLE7)


# %%
t7 = table7(results)
save_table(t7.round(3), 'table7')
t7.round(2)

# %% [markdown]
# `cost x100 (own objective)` is the weighted cost for the weighted rows and the plain cost for the
# others: each method is scored by what it optimises, as in the paper's Table 7.
#
# The weights cut the features per person and remove education, as in the paper, but with SPEC's
# classifier they do not raise the share of people asked to change savings (78.5 → 77.0 %, counting
# acts that change something). Chapter 9 reruns the study with the original code's SGD classifier, and
# there the share rises (88.1 → 98.7 %): the savings effect depends on the classifier.

# %% [markdown]
# ### Table 1 with the original code's classifiers
#
# Chapter 3 found that the original code trained its classifiers with plain SGD, and chapter 6 that
# the oracle moves toward the paper's numbers when it serves the people those classifiers reject. Here
# CARMA goes through the same change: for every SCM, the SGD classifier, its rejected test people, and
# CARMA trained against it with the same settings and seeds as Table 1 (`carma_table(...,
# clf_optimizer='sgd')`). The Adam columns are Table 1's above.

# %%
t_sgd = carma_table(profile)
save_table(t_sgd.round(3), 'table1_sgd_classifier')
sgd_cmp = pd.DataFrame({
    'oracle cost, Adam': t1['oracle cost x100'], 'oracle cost, SGD': t_sgd['oracle cost x100'], 'paper oracle cost': t1['paper cost x100'],
    'CARMA cost, Adam': t1['CARMA cost x100'], 'CARMA cost, SGD': t_sgd['CARMA cost x100'], 'paper CARMA cost': t1['paper CARMA cost x100'],
    'CARMA / oracle, Adam': t1['CARMA / oracle cost'], 'CARMA / oracle, SGD': t_sgd['cost / oracle'],
    'CARMA acts, Adam': t1['CARMA acts'], 'CARMA acts, SGD': t_sgd['CARMA acts'], 'CARMA idle acts, SGD': t_sgd['CARMA idle acts'],
    'paper CARMA acts': t1['paper CARMA acts'],
    'CARMA validity %, Adam': t1['CARMA validity %'], 'CARMA validity %, SGD': t_sgd['CARMA validity %'],
    'validity min %, SGD': t_sgd['validity min %'], 'paper CARMA validity %': t1['paper CARMA validity %'], 'CARMA prob, SGD': t_sgd['CARMA prob']})
save_table(sgd_cmp.round(3), 'table1_by_classifier')
sgd_cmp.round(2)

# %%
assert (t_sgd['CARMA validity %'] > 80).all()
if profile.name == 'paper':
    assert (t_sgd['CARMA validity %'] >= 99).all(), t_sgd
    for who in ('oracle', 'CARMA'):   # with SGD classifiers both costs are nearer the paper's, on every SCM
        assert ((sgd_cmp[f'paper {who} cost'] - sgd_cmp[f'{who} cost, SGD']).abs()
                < (sgd_cmp[f'paper {who} cost'] - sgd_cmp[f'{who} cost, Adam']).abs()).all(), who

# %% [markdown]
# **Measured** (paper profile, 10 seeds per SCM; `figures/table1_by_classifier.md`,
# `figures/table1_sgd_classifier.md`):
#
# - With SGD classifiers, CARMA's cost moves toward the paper's on every SCM, most on chain-nlin
#   (1.23 → 6.78, paper 11.81). It stays 33–49 % below the paper's, as the oracle's stays 19–39 % below.
# - CARMA's cost relative to the oracle's is 0.68–1.10 with SGD (0.50–0.89 with Adam), against the
#   paper's 0.91–1.21. On chain-nlin it moves from 0.50 to 1.10, close to the paper's 1.21. Elsewhere
#   CARMA stays cheaper than the grid oracle, as it already was with Adam.
# - Causal validity stays at 99.9–100 % on average (lowest seed 99.66 %), and the acts change little.
# - CARMA's post-recourse probability is 0.51–0.65: with a less confident classifier it stops just past
#   the boundary, where the paper reports 0.59–0.85.
#
# So the classifier explains much of the distance between our absolute numbers and the paper's,
# especially on chain-nlin, but not all of it.

# %% [markdown]
# ### The paper's algorithm on the original code's classifiers
#
# Our CARMA differs from the paper's in five ways (chapter 7): a tempered hinge, a wider shift clamp on
# two SCMs, restarts, mask refinement and polishing. Each was added because the paper's algorithm did
# badly against our sharp Adam classifiers, whose rejected people have logits near −70. Against the SGD
# classifiers that reason is gone. `paper_algorithm` switches all five off and restores Table 5's
# margins. Trained that way against the SGD classifiers, CARMA is as close to the original experiment
# as we can get (the damping keeps SPEC's sign). The same algorithm against the Adam classifiers is
# shown too.

# %%
PAPER_CARMA_COST_STD = {'triangle-lin': 4.13, 'collider-lin': 4.06, 'chain-lin': 5.12, 'triangle-nlin': 3.13,   # paper Table 1 (reference)
                        'collider-nlin': 1.10, 'chain-nlin': 2.05, 'loan': 1.36}
paper_alg = {opt: carma_table(profile, algorithm='paper') for opt in ('sgd', 'adam')}
for opt, t in paper_alg.items(): save_table(t.round(3), f'table1_paper_algorithm_{opt}_classifier')
pa = paper_alg['sgd']
repro = pd.DataFrame({
    'CARMA cost, paper alg. + SGD': pa['CARMA cost x100'], '± std': pa['cost std'],
    'paper CARMA cost': t1['paper CARMA cost x100'], 'paper ± std': pd.Series(PAPER_CARMA_COST_STD),
    'CARMA cost, paper alg. + Adam': paper_alg['adam']['CARMA cost x100'], 'CARMA cost, ours + Adam': t1['CARMA cost x100'],
    'CARMA / oracle, paper alg. + SGD': pa['cost / oracle'], 'paper CARMA / oracle': t1['paper CARMA cost x100'] / t1['paper cost x100'],
    'validity %, paper alg. + SGD': pa['CARMA validity %'], 'validity min %': pa['validity min %'],
    'paper validity %': t1['paper CARMA validity %'], 'validity %, paper alg. + Adam': paper_alg['adam']['CARMA validity %'],
    'acts, paper alg. + SGD': pa['CARMA acts'], 'paper acts': t1['paper CARMA acts'], 'prob, paper alg. + SGD': pa['CARMA prob']}
   ).reindex(pa.index).rename_axis('scm')
save_table(repro.round(3), 'table1_paper_algorithm')
repro.round(2)

# %%
assert (pa['CARMA validity %'] > 80).all()
if profile.name == 'paper':
    ratio = {opt: (t['CARMA cost x100'] / t1['paper CARMA cost x100']).median() for opt, t in paper_alg.items()}
    assert ratio['sgd'] < 1.5 and ratio['sgd'] < ratio['adam'], ratio      # SGD classifiers: the paper's costs, roughly
    assert (pa['CARMA validity %'] >= 98).all() and ((pa['CARMA acts'] - t1['paper CARMA acts']).abs() < 0.6).all(), pa
    within = (repro['CARMA cost, paper alg. + SGD'] - repro['paper CARMA cost']).abs() <= repro['paper ± std']
    assert within.sum() >= 5 and set(within[~within].index) == {'collider-lin', 'collider-nlin'}, within


# %% [markdown]
# **Measured** (paper profile, 10 seeds per SCM; `figures/table1_paper_algorithm.md`):
#
# - **The paper's algorithm against the SGD classifiers lands near the paper's Table 1.** Costs are
#   0.86–1.75× the paper's (median 1.32×): loan 5.78 ± 1.15 against 6.69 ± 1.36, chain-nlin 13.82 ± 2.50
#   against 11.81 ± 2.05. Five of the seven means are within one of the paper's standard deviations of
#   its mean; collider-lin and collider-nlin are not. Acts are within 0.25 of the paper's on six SCMs
#   (loan: 3.45 against 2.89). The seed-to-seed spread is as large as the paper's, or larger: ± 9.1 on
#   triangle-lin, ± 19.4 on collider-lin, where a few seeds go badly.
# - Causal validity averages 98.7–100 % per SCM (paper 99.74–99.98 %). The lowest seeds are on
#   collider-lin (92.2 %) and chain-lin (93.3 %).
# - **The same algorithm against the Adam classifiers does not.** Costs are 2.3–16× the oracle's, and
#   validity falls to 95.0 % on chain-nlin and 95.3 % on triangle-nlin. This is chapter 7's starting
#   point.
# - **Our additions** (Table 1 above, Adam classifiers) give costs 0.50–0.89× the oracle's, validity
#   99.87 % or more on every SCM, and standard deviations over seeds of 0.01–0.2.
#
# So the paper's algorithm, run against classifiers trained the way its code trained them, largely
# reproduces the paper's numbers: five of seven SCMs fall within the paper's own seed-to-seed spread,
# and collider-lin and collider-nlin come out costlier. The departures in this package's headline table
# come from SPEC's better-trained classifiers, and from the additions CARMA needed to cope with them.

# %% [markdown]
# ## Fig. 8: how much training data CARMA needs (loan)
#
# CARMA trained on a fraction of the recourse training split and evaluated on the same test people.

# %%
#| export
def plot_ablation(results: pd.DataFrame):
    "Paper Fig. 8: cost, validity and acts of CARMA on loan against the training-data fraction (mean ± std over seeds)."
    import matplotlib.pyplot as plt
    r = results[(results['scm'] == 'loan') & results['method'].isin(['carma', 'carma-fraction'])]
    g = r.groupby('fraction')
    fig, axes = plt.subplots(1, 3, figsize=(13, 3))
    for ax, col in zip(axes, ['cost x100', 'validity %', 'acts']):
        ax.errorbar(g[col].mean().index, g[col].mean(), yerr=g[col].std().fillna(0), marker='o', capsize=3, color='#1b9e77')
        ax.set_xscale('log'); ax.set_xlabel('fraction of the training people'); ax.set_title(col)
    fig.suptitle('loan: CARMA vs training-data fraction (paper Fig. 8)', y=1.04)
    return fig


# %%
fig = plot_ablation(results)
save_figure(fig, 'fig8_training_fraction')
plt.show()


# %% [markdown]
# ## Fig. 3: CARMA with the flow vs with VACA (loan)

# %%
#| export
def plot_causal_models(results: pd.DataFrame):
    "Paper Fig. 3: loan, CARMA with the causal flow vs with VACA — cost, validity, acts, time (mean ± std over seeds)."
    import matplotlib.pyplot as plt
    r = results[(results['scm'] == 'loan') & (results['fraction'] == 1.0) & results['method'].isin(['carma', 'carma-vaca'])]
    g = r.groupby('method')
    fig, axes = plt.subplots(1, 4, figsize=(14, 2.8))
    for ax, col in zip(axes, ['cost x100', 'validity %', 'acts', 'ms per person (batch size 1)']):
        m, s = g[col].mean(), g[col].std().fillna(0)
        ax.bar([{'carma': 'flow', 'carma-vaca': 'VACA'}[k] for k in m.index], m, yerr=s, capsize=4, color=['#1b9e77', '#e6ab02'][:len(m)])
        ax.set_title(col, fontsize=10)
    fig.suptitle('loan: CARMA with the causal flow vs with VACA (paper Fig. 3)', y=1.06)
    return fig


# %%
fig = plot_causal_models(results)
save_figure(fig, 'fig3_flow_vs_vaca')
plt.show()

# %% [markdown]
# ## Figs. 2, 4, 5, 7, 9 and 10: what the methods do
#
# These need each person's action, not just the summary rows; the models come from the cache, so
# recomputing the first seed's recommendations takes a few seconds.

# %%
ref = oracle_reference('loan', profile)
flow = fit_flow('loan', ref.pools.causal, profile, verbose=False)
carma0 = train_carma_seeds('loan', ref.clf, flow, ref.pools.recourse, seeds=range(profile.seeds), profile=profile, verbose=False)[0]
carmaw = train_carma_seeds('loan', ref.clf, flow, ref.pools.recourse, seeds=range(profile.seeds), profile=profile, verbose=False,
                           weights=PAPER_PREFERENCE_WEIGHTS, prior='preference')[0]
rep = lambda m: (lambda r: evaluate_recourse(ref.problem, ref.clf, ref.people, r))(m.recommend(ref.people))
reports = {'CARMA': rep(carma0), 'oracle': evaluate_recourse(ref.problem, ref.clf, ref.people, ref.result),
           'CARMA (weighted)': rep(carmaw)}
for name, fig in [('fig2_shifts_carma_vs_oracle', plot_shifts('loan', {k: reports[k] for k in ('CARMA', 'oracle')}, 'loan: shifts, CARMA vs oracle (paper Fig. 2)')),
                  ('fig7_features_carma_vs_oracle', plot_feature_use('loan', {k: reports[k] for k in ('CARMA', 'oracle')}, 'loan: CARMA vs oracle (paper Fig. 7)')),
                  ('fig4_preferences_features', plot_feature_use('loan', {k: reports[k] for k in ('CARMA', 'CARMA (weighted)')}, 'loan: unweighted vs weighted CARMA (paper Fig. 4)')),
                  ('fig5_preferences_shifts', plot_shifts('loan', {k: reports[k] for k in ('CARMA', 'CARMA (weighted)')}, 'loan: unweighted vs weighted CARMA (paper Fig. 5)'))]:
    save_figure(fig, name)
plt.show()

# %%
synth = {}
for name in [n for n in SCM_NAMES if n != 'loan']:
    r_ = oracle_reference(name, profile)
    f_ = fit_flow(name, r_.pools.causal, profile, verbose=False)
    c_ = train_carma_seeds(name, r_.clf, f_, r_.pools.recourse, seeds=range(profile.seeds), profile=profile, verbose=False)[0]
    d_ = train_dice_vae_seeds(name, r_.clf, r_.pools.recourse, range(profile.seeds), profile=profile, verbose=False)[0]
    ev = lambda rec: evaluate_recourse(r_.problem, r_.clf, r_.people, rec)
    synth[name] = {'oracle': evaluate_recourse(r_.problem, r_.clf, r_.people, r_.result),
                   'CARMA': ev(c_.recommend(r_.people)), 'DiCE-VAE': ev(d_.recommend(r_.people))}
save_figure(plot_targets(synth, ['triangle-lin', 'collider-lin', 'chain-lin'], 'linear SCMs (paper Fig. 9)'), 'fig9_targets_linear')
save_figure(plot_targets(synth, ['triangle-nlin', 'collider-nlin', 'chain-nlin'], 'non-linear SCMs (paper Fig. 10)'), 'fig10_targets_nonlinear')
plt.show()


# %% [markdown]
# ## New: time per person against the number of people
#
# The point of amortization, in one picture. The loop oracle's time per person is constant (it solves
# each person from scratch, tens of seconds on loan); the batched oracle gets cheaper per person as
# more people share each tensor operation, down to its arithmetic cost; CARMA's time per person falls
# until the forward pass itself dominates. Log scales; this shared 2-core machine's times are noisy.

# %%
#| export
def scaling_times(name: str = 'loan', sizes=(1, 10, 100, 1000, 10_000, 100_000), oracle_max: int = 1000, profile=None) -> pd.DataFrame:
    "Seconds per person for the loop oracle, the batched oracle and CARMA at several numbers of people."
    p = get_profile(profile)
    ref = oracle_reference(name, p)
    flow = fit_flow(name, ref.pools.causal, p, verbose=False)
    carma = train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, seeds=range(p.seeds), profile=p, verbose=False)[0]
    loop = loop_seconds_per_person(ref.problem, ref.clf, ref.people[0])
    carma.recommend(ref.people[:1])                                            # warm-up: builds the small-batch NumPy policy once
    rows = []
    for n in sizes:
        x = ref.people[torch.arange(n) % len(ref.people)]
        t = time.perf_counter(); carma.recommend(x); c = (time.perf_counter() - t) / n
        o = np.nan
        if n <= oracle_max:
            t = time.perf_counter(); oracle_recourse(ref.problem, ref.clf, x, verbose=False); o = (time.perf_counter() - t) / n
        rows.append({'people': n, 'loop oracle s': loop, 'batched oracle s': o, 'CARMA s': c})
    return pd.DataFrame(rows).set_index('people')


# %%
sizes = (1, 10, 100, 1000, 10_000, 100_000) if profile.name == 'paper' else (1, 10, 100, 10_000)
scaling = scaling_times('loan', sizes, oracle_max=1000 if profile.name == 'paper' else 10, profile=profile)
save_table(scaling, 'scaling_loan')
fig, ax = plt.subplots(figsize=(6, 3.5))
for col, c in zip(scaling.columns, ['#7570b3', '#d95f02', '#1b9e77']):
    ax.plot(scaling.index, scaling[col], marker='o', label=col.removesuffix(' s'), color=c)
ax.set_xscale('log'); ax.set_yscale('log'); ax.set_xlabel('number of people'); ax.set_ylabel('seconds per person'); ax.legend()
ax.set_title('loan: time per person vs number of people')
save_figure(fig, 'scaling_time_per_person')
plt.show()
scaling

# %%
assert scaling['CARMA s'].iloc[-1] < scaling['loop oracle s'].iloc[0]

# %%
#| hide
import nbdev; nbdev.nbdev_export()

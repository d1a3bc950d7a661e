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
# > Table 1, Table 7 and the paper's figures from one run of the experiment runner, our numbers next to
# > the paper's, the targets we set ourselves, and every difference from the paper in one list.
#
# This chapter reads the tidy results of chapter 14 (running whatever jobs are missing, reusing every
# cached model) and turns them into the paper's tables. At the quick profile — what `nbdev_test` runs —
# the numbers are small-budget stand-ins; the committed `figures/` come from
# `carma-nb reproduce --profile paper`.

# %%
#| export
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from carma_nb.training import CarmaOptions, train_carma_seeds
from carma_nb.core import get_profile
from carma_nb.dice_vae import PAPER_DICE_COST
from carma_nb.experiments import run_experiments
from carma_nb.flow import fit_flow
from carma_nb.oracle import PAPER_ORACLE, loop_seconds_per_person, oracle_recourse, oracle_reference
from carma_nb.optimum import optimal_recourse
from carma_nb.preferences import PAPER_TABLE7
from carma_nb.scm import SCM_NAMES

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt
from IPython.display import Image, display
from carma_nb.core import figure_dir, save_figure, save_table

# %% [markdown]
# ## The results
#
# One row per SCM, method and seed (and training fraction for the ablation of Fig. 8).

# %%
profile = get_profile()
t0 = time.perf_counter()
results = run_experiments(profile, verbose=False)
print(f'{len(results)} result rows ({profile.name} profile, {profile.seeds} seeds) '
      f'in {time.perf_counter() - t0:.0f} s')
results.groupby(['scm', 'method']).size().unstack(fill_value=0)

# %% [markdown]
# ## Table 1
#
# Per SCM: the oracle (chapter 6) in our units and in the original code's, the paper's CARMA
# (chapter 8) and our improved recipe (chapter 9) as mean ± standard deviation over the seeds, with
# causal validity (mean and worst seed), and DiCE-VAE (chapter 12). Cost is l2 × 100 in one definition
# for every method (chapter 5); the paper's columns are its published values.

# %%
#| export
# the paper's Table 1, CARMA columns: references shown next to ours, never results
PAPER_CARMA = pd.DataFrame({
    'scm': ['triangle-lin', 'collider-lin', 'chain-lin', 'triangle-nlin', 'collider-nlin', 'chain-nlin',
            'loan'],
    'paper CARMA cost x100': [11.36, 10.36, 10.62, 8.95, 4.19, 11.81, 6.69],
    'paper CARMA cost std': [4.13, 4.06, 5.12, 3.13, 1.10, 2.05, 1.36],
    'paper CARMA acts': [1.45, 2.37, 2.26, 1.96, 2.62, 2.32, 2.89],
    'paper CARMA validity %': [99.94, 99.98, 99.91, 99.89, 99.74, 99.98, 99.95]}).set_index('scm')

def _carma_columns(c: pd.DataFrame, prefix: str) -> dict:
    ("Mean cost ± std, validity (mean and worst seed), acts and times of one CARMA method's rows "
     "(one per seed).")
    return {f'{prefix} cost': c['cost x100'].mean(), f'{prefix} cost std': c['cost x100'].std(),
            f'{prefix} validity %': c['validity %'].mean(), f'{prefix} validity min %': c['validity %'].min(),
            f'{prefix} acts': c['acts'].mean(),
            f'{prefix} µs/person': c['ms per person (batched)'].mean() * 1e3,
            f'{prefix} ms (batch size 1)': c['ms per person (batch size 1)'].mean(),
            f'{prefix} seeds': len(c)}

def table1(results: pd.DataFrame) -> pd.DataFrame:
    ("The paper's Table 1 from a results table (cost ×100): ours (CARMA: mean ± std over seeds) "
     "and the paper's alongside.")
    r = results[results['fraction'] == 1.0]
    rows = []
    for scm in [s for s in SCM_NAMES if s in set(r['scm'])]:
        o, c, ci, d = (r[(r['scm'] == scm) & (r['method'] == m)]
                       for m in ('oracle', 'carma', 'carma-improved', 'dice-vae'))
        row = {'scm': scm}
        if len(o):
            row.update({'oracle cost': o['cost x100'].mean(), 'oracle acts': o['acts'].mean(),
                        'oracle cost, original convention': o['cost x100 (original convention)'].mean(),
                        'oracle acts, original convention': o['acts (original convention)'].mean(),
                        'oracle ms/person (batched)': o['ms per person (batched)'].mean()})
        if len(c): row.update(_carma_columns(c, 'CARMA'))
        if len(ci): row.update(_carma_columns(ci, 'improved CARMA'))
        if len(d): row['DiCE-VAE cost'] = d['cost x100'].mean()
        rows.append(row)
    ours = pd.DataFrame(rows).set_index('scm')
    paper = pd.DataFrame({'paper oracle cost': PAPER_ORACLE['paper cost x100'],
                          'paper oracle acts': PAPER_ORACLE['paper acts'],
                          'paper CARMA cost': PAPER_CARMA['paper CARMA cost x100'],
                          'paper CARMA cost std': PAPER_CARMA['paper CARMA cost std'],
                          'paper CARMA validity %': PAPER_CARMA['paper CARMA validity %'],
                          'paper CARMA acts': PAPER_CARMA['paper CARMA acts'],
                          'paper DiCE-VAE cost': pd.Series(PAPER_DICE_COST)})
    return ours.join(paper)


# %% [markdown]
# **The optimum.** Chapter 6b computes each person's minimum-cost valid action in continuous values;
# over the same rejected test people it says how far each method is from the best possible action: the
# grid oracle by its coarseness, CARMA by answering everybody in one forward pass (the amortization gap).

# %%
#| export
def optimum_columns(t1: pd.DataFrame, # Table 1 (`table1`)
                    profile=None, # the profile its oracle rows were computed at (the same people)
                   ) -> pd.DataFrame:
    "Table 1 with the optimal cost of the same people (chapter 6b) and each method's cost over it."
    out = t1.copy()
    for scm in out.index:
        ref = oracle_reference(scm, profile)
        opt = optimal_recourse(ref.problem, ref.clf, ref.people, ref.result)
        out.loc[scm, ['optimal cost', 'optimal acts']] = [100 * opt.cost.nanmean().item(),
                                                          opt.mask[opt.found].sum(1).float().mean().item()]
    for m in ('oracle', 'CARMA', 'improved CARMA'):
        out[f'{m} / optimal'] = out[f'{m} cost'] / out['optimal cost']
    return out


# %%
t1 = optimum_columns(table1(results), profile)
save_table(t1.round(3), 'table1')
t1.round(2).T


# %% [markdown]
# **The targets.** We hold our reproduction to three targets, checked below on every SCM:
#
# 1. the oracle in the original code's convention within 8 % of the paper's oracle cost and within
#    0.15 of its acts (the original convention is what the paper's oracle column measures, chapter 6);
# 2. the paper's CARMA within one of the paper's own seed standard deviations of its cost on at least
#    five of seven SCMs, with causal validity ≥ 99 % on every SCM;
# 3. the improved recipe at or below the paper's CARMA cost on every SCM, with validity ≥ 99.5 %.

# %%
#| export
def table1_targets(t1: pd.DataFrame) -> pd.DataFrame:
    "Per SCM, each target of this chapter: the measured gap and whether it holds."
    gap = t1['oracle cost, original convention'] / t1['paper oracle cost'] - 1
    acts = t1['oracle acts, original convention'] - t1['paper oracle acts']
    return pd.DataFrame({
        'oracle cost gap %': 100 * gap, 'oracle acts gap': acts,
        'oracle ok': (gap.abs() <= 0.08) & (acts.abs() <= 0.15),
        'CARMA − paper, in paper std':
            (t1['CARMA cost'] - t1['paper CARMA cost']) / t1['paper CARMA cost std'],
        'CARMA within 1 std': (t1['CARMA cost'] - t1['paper CARMA cost']).abs() <= t1['paper CARMA cost std'],
        'CARMA validity ≥ 99 %': t1['CARMA validity %'] >= 99,
        'improved / CARMA cost': t1['improved CARMA cost'] / t1['CARMA cost'],
        'improved ok': (t1['improved CARMA cost'] <= t1['CARMA cost'])
                       & (t1['improved CARMA validity %'] >= 99.5)})


# %%
targets = table1_targets(t1)
save_table(targets.round(3), 'table1_targets')
targets.round(3)

# %%
assert ((t1['oracle cost'] > 0).all() and (t1['CARMA validity %'] > 80).all()
        and (t1['improved CARMA validity %'] > 80).all())
# the rejected people's narrower ranges
assert (t1['oracle cost, original convention'] > t1['oracle cost']).all()
print(f"targets held: oracle {int(targets['oracle ok'].sum())}/7, CARMA within one paper std "
      f"{int(targets['CARMA within 1 std'].sum())}/7 "
      f"(validity ≥ 99 % on {int(targets['CARMA validity ≥ 99 %'].sum())}), "
      f"improved {int(targets['improved ok'].sum())}/7")
if profile.name == 'paper':      # what the prose of this chapter and the README claim, checked
    assert (targets['oracle cost gap %'].abs() <= 8).all()
    assert (targets['oracle acts gap'].abs() <= 0.15).sum() >= 6       # all but triangle-nlin's acts
    assert targets['CARMA within 1 std'].sum() >= 5 and targets['improved ok'].all()
    short = t1.loc[~targets['CARMA validity ≥ 99 %'], 'CARMA validity %'].round(1)
    test_eq(short.to_dict(), {'triangle-nlin': 96.7, 'chain-lin': 99.0})
    assert (t1.loc[['triangle-nlin', 'chain-lin'], 'improved CARMA validity %'].round(2) >= 99.99).all()
    dice = (t1['DiCE-VAE cost'] / t1['paper DiCE-VAE cost']).drop('loan').round(2)
    test_eq((dice.min(), dice.max()), (0.47, 0.82))

# %% [markdown]
# **How far from the optimum.** The grid oracle pays 1.28–1.95 times the optimal cost (chapter 6b), CARMA
# with the paper's recipe 1.42–3.43 times, the improved recipe 1.02–1.45 times: within 5 % of the
# optimum only on chain-lin. What CARMA pays for is clearance. The optimum lies on the classifier's
# decision boundary (probability 0.5 under the true SCM); the improved CARMA's counterfactuals land, on
# average, at 0.52 (chain-lin) to 0.65 (loan), because it is trained to clear the boundary by a margin
# under its own causal model, the flow, so that its advice survives the flow's errors, and one network
# answers for everybody. Where it clears the boundary least it is closest to the optimum (chain-lin
# 0.52: 1.02×; triangle-lin 0.56: 1.09×). On chain-nlin it also acts on more features than the optimum
# (2.46 against 1.74).

# %%
improved_prob = results[(results['method'] == 'carma-improved') & (results['fraction'] == 1.0)].groupby(
    'scm')['prob (true SCM)'].mean()
if profile.name == 'paper':
    span = lambda c: (round(t1[c].min(), 2), round(t1[c].max(), 2))
    test_eq([span(f'{m} / optimal') for m in ('oracle', 'CARMA', 'improved CARMA')],
            [(1.28, 1.95), (1.42, 3.43), (1.02, 1.45)])
    test_eq(list(t1.index[t1['improved CARMA / optimal'] <= 1.05]), ['chain-lin'])
    test_eq((round(improved_prob.min(), 2), improved_prob.idxmin(), round(improved_prob.max(), 2),
             improved_prob.idxmax()), (0.52, 'chain-lin', 0.65, 'loan'))
    test_eq(round(improved_prob['triangle-lin'], 2), 0.56)
    test_eq([round(t1.loc['chain-nlin', c], 2) for c in ('improved CARMA acts', 'optimal acts')],
            [2.46, 1.74])
assert (t1['oracle / optimal'] > 1).all()                                     # the optimum is never dearer


# %% [markdown]
# ## Every difference from the paper
#
# 1. **One cost for every method.** The original code computed the oracle's grid and its cost ranges
#    from the rejected training people, CARMA's from all of them; the paper's oracle and CARMA columns
#    are therefore in different units. We use the whole split for every method and report the oracle
#    once more in the original convention, the one comparable to the paper's oracle column (chapter 6).
# 2. **The classifiers** are trained with plain SGD as the original code did (the paper's appendix
#    says Adam, which makes them far sharper; chapter 3 and `studies/classifier_optimizer.ipynb`).
# 3. **The damping sign.** The original code applies the multiplier's damping with a minus sign; we use
#    the plus sign of the method of multipliers (chapter 8).
# 4. **Times** are measured on this shared 2-core machine: the oracle batched over all people (its
#    natural mode here), CARMA both one person at a time and batched. The paper timed both one person at
#    a time on its own CPU.
# 5. **Our improved recipe** is reported beside the paper's CARMA, never in its place (chapter 9).
# 6. **One draw of data**, as the paper: every table comes from the pools of seed 0; the studies in
#    `studies/` repeat the classifier, the flow and the preference study over many draws.
# 7. **DiCE-VAE is cheaper than the paper's** on the six synthetic SCMs: 0.47–0.82× the paper's cost at
#    the paper profile (loan: 13.7 vs 13.3), with the hyperparameters of the paper's Table 4 and acting,
#    as there, on every actionable feature (chapter 12). We have not found the cause. On the two chains
#    it is then cheaper than the paper's CARMA, whose failing seeds (below) raise its mean.
#
# Where a target above is missed, the targets table says by how much; what was tried is in the study
# the cell's chapter links (the oracle's acts on triangle-nlin: `studies/oracle_triangle_nlin_acts`).
# The paper's CARMA falls short of 99 % validity on two SCMs (at the paper profile: triangle-nlin
# 96.7 %, chain-lin 99.0 %) because of single seeds, not of every model: one triangle-nlin seed is valid
# for 79 % of the people at three times the others' cost, two chain-lin seeds for 95 % (`results_paper.csv`,
# one row per seed). The paper reports no per-seed validity; its 99.9 % on both says its runs had no
# such seed. The improved recipe of chapter 9, which trains six candidates per seed on both SCMs and
# keeps the one best on its own training people, is ≥ 99.99 % valid on both.

# %% [markdown]
# ## Table 7: population preferences (loan)

# %%
#| export
def table7(results: pd.DataFrame) -> pd.DataFrame:
    ("Unweighted vs weighted CARMA and the weighted oracle on loan, from a results table; "
     "the paper's values alongside.")
    r = results[(results['scm'] == 'loan') & (results['fraction'] == 1.0)]
    names = {'carma': 'CARMA', 'carma-weighted': 'CARMA (weighted)', 'oracle-weighted': 'oracle (weighted)',
             'oracle': 'oracle'}
    rows = []
    for m, label in names.items():
        d = r[r['method'] == m]
        if not len(d): continue
        # the oracle is deterministic: one run
        rows.append({'method': label, 'seeds': max(1, int(d['seed'].notna().sum())),
                     'cost x100 (own objective)': d['cost x100'].mean(), 'cost std': d['cost x100'].std(),
                     'validity %': d['validity %'].mean(), 'acts': d['acts'].mean()})
    return pd.DataFrame(rows).set_index('method').join(PAPER_TABLE7)


# %%
t7 = table7(results)
save_table(t7.round(3), 'table7')
t7.round(2)


# %% [markdown]
# ## Fig. 8: how much training data CARMA needs (loan)
#
# CARMA trained on a fraction of the recourse training split and evaluated on the same test people.

# %%
#| export
def plot_ablation(results: pd.DataFrame):
    ("Paper Fig. 8: cost, validity and acts of CARMA on loan against the training-data fraction "
     "(mean ± std over seeds).")
    import matplotlib.pyplot as plt
    r = results[(results['scm'] == 'loan') & results['method'].isin(['carma', 'carma-fraction'])]
    g = r.groupby('fraction')
    fig, axes = plt.subplots(1, 3, figsize=(13, 3))
    for ax, col in zip(axes, ['cost x100', 'validity %', 'acts']):
        ax.errorbar(g[col].mean().index, g[col].mean(), yerr=g[col].std().fillna(0), marker='o', capsize=3,
                    color='#1b9e77')
        ax.set_xscale('log'); ax.set_xlabel('fraction of the training people'); ax.set_title(col)
    fig.suptitle('loan: CARMA vs training-data fraction (paper Fig. 8)', y=1.04)
    return fig


# %%
fig = plot_ablation(results)
save_figure(fig, 'fig8_training_fraction')
plt.show()

# %% [markdown]
# ## The paper's other figures
#
# Each is drawn by the chapter that teaches its method, from that chapter's models: Fig. 2 and Fig. 7
# (CARMA vs the oracle on loan) by chapter 8, Fig. 3 (flow vs VACA) by chapter 11, Figs. 4–5
# (preferences) by chapter 10, Fig. 6 (the graphs) by chapter 1, Figs. 9–10 (DiCE-VAE) by chapter 12.

# %%
for name in ('fig2_shifts_carma_vs_oracle', 'fig3_flow_vs_vaca', 'fig4_preferences_features',
             'fig5_preferences_shifts', 'fig6_causal_graphs', 'fig7_features_carma_vs_oracle',
             'fig9_targets_linear', 'fig10_targets_nonlinear'):
    path = figure_dir(profile)/f'{name}.png'
    if path.exists(): display(Image(filename=str(path), width=800))
    else: print(f'{name}: run its chapter first')


# %% [markdown]
# ## New: time per person against the number of people
#
# The point of amortization, in one picture. The loop oracle's time per person is constant (it solves
# each person from scratch, tens of seconds on loan); the batched oracle gets cheaper per person as
# more people share each tensor operation, down to its arithmetic cost; CARMA's time per person falls
# until the forward pass itself dominates. Log scales; this shared 2-core machine's times are noisy.

# %%
#| export
def scaling_times(name: str = 'loan', sizes=(1, 10, 100, 1000, 10_000, 100_000), oracle_max: int = 1000,
                  profile=None) -> pd.DataFrame:
    "Seconds per person for the loop oracle, the batched oracle and CARMA at several numbers of people."
    p = get_profile(profile)
    ref = oracle_reference(name, p)
    flow = fit_flow(name, ref.pools.causal, p, verbose=False)
    carma = train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, range(p.seeds),
                              CarmaOptions(profile=p, verbose=False))[0]
    loop = loop_seconds_per_person(ref.problem, ref.clf, ref.people[0])
    rows = []
    for n in sizes:
        x = ref.people[torch.arange(n) % len(ref.people)]
        t = time.perf_counter(); carma.recommend(x); c = (time.perf_counter() - t) / n
        o = np.nan
        if n <= oracle_max:
            t = time.perf_counter(); oracle_recourse(ref.problem, ref.clf, x, verbose=False)
            o = (time.perf_counter() - t) / n
        rows.append({'people': n, 'loop oracle s': loop, 'batched oracle s': o, 'CARMA s': c})
    return pd.DataFrame(rows).set_index('people')


# %%
sizes = (1, 10, 100, 1000, 10_000, 100_000) if profile.name == 'paper' else (1, 10, 100, 10_000)
scaling = scaling_times('loan', sizes, oracle_max=1000 if profile.name == 'paper' else 10, profile=profile)
save_table(scaling, 'scaling_loan')
fig, ax = plt.subplots(figsize=(6, 3.5))
for col, c in zip(scaling.columns, ['#7570b3', '#d95f02', '#1b9e77']):
    ax.plot(scaling.index, scaling[col], marker='o', label=col.removesuffix(' s'), color=c)
ax.set_xscale('log'); ax.set_yscale('log')
ax.set_xlabel('number of people'); ax.set_ylabel('seconds per person'); ax.legend()
ax.set_title('loan: time per person vs number of people')
save_figure(fig, 'scaling_time_per_person')
plt.show()
scaling

# %%
assert scaling['CARMA s'].iloc[-1] < scaling['loop oracle s'].iloc[0]

# %%
#| hide
import nbdev; nbdev.nbdev_export()

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
#| default_exp preferences

# %% [markdown]
# # Population preferences
#
# > Some changes are harder than others: preference weights in the cost, and a mask prior that expects
# > the hard features to be chosen less often.
#
# So far every actionable feature cost the same per unit of (scaled) change. In a real population
# that is rarely true: going back to school takes years, asking for a smaller loan takes a minute.
# CARMA takes such knowledge as **preference weights** $w_j \ge 1$, one per actionable feature,
# 1 meaning "easiest" (`SPEC.md` §9). They enter in two places:
#
# - the **cost** of chapter 5 becomes $\frac1K\sum_j w_j\, a_j\, (\tilde x^F_j - \tilde x^{CF}_j)^2 / R_j$ —
#   for CARMA and for the oracle alike, so the two stay comparable;
# - the **mask prior** of CARMA's KL term becomes $\pi_j = 1/(2 w_j)$ instead of $\frac12$: before seeing
#   any person, the mask network expects a feature of weight 3 to be chosen one time in six.
#
# The paper's case study is loan with education 3, loan amount 2, income 2 and savings 1. Its finding:
# people are asked to act on fewer features (2.89 → 2.26 on average), savings becomes the most used
# lever (37 % → 50 % of people) and education almost disappears (42 % → 11 %), at a cost close to the
# weighted oracle's. This chapter reproduces that study.

# %%
#| export
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from carma_nb.carma import idle_acts, mask_prior, train_carma_seeds
from carma_nb.core import get_profile
from carma_nb.flow import fit_flow
from carma_nb.oracle import cached_oracle, oracle_reference
from carma_nb.recourse import RecourseReport, as_weights, evaluate_recourse, recourse_problem
from carma_nb.scm import get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close
import matplotlib.pyplot as plt
from carma_nb.carma import plot_feature_use, plot_shifts
from carma_nb.core import project_root, save_figure, save_table
from carma_nb.data import make_pools

# %% [markdown]
# ## Weights and the prior
#
# Weights are given per actionable feature, by position or — less error-prone — by name. Features not
# named keep weight 1. What a person cannot act on cannot carry a weight, and a weight below 1 would
# make a feature *cheaper* than the baseline, which the cost's scale does not allow: both are refused
# with a message saying what to do instead.

# %%
#| export
PAPER_PREFERENCE_WEIGHTS = {'education': 3., 'loan_amount': 2., 'income': 2., 'savings': 1.}   # SPEC §9 case study

# %%
loan = get_scm('loan')
w = as_weights(loan, PAPER_PREFERENCE_WEIGHTS)
pd.DataFrame({'weight w_j': w.numpy(), 'prior π_j': mask_prior(w, 'preference').numpy(),
              'role': [n.role for n in loan.nodes]}, index=loan.names)

# %%
test_eq(as_weights(loan, [3, 2, 2, 1]), w)                                 # by position: education, loan_amount, income, savings
test_close(mask_prior(w, 'preference')[loan.actionable], torch.tensor([1/6, 1/4, 1/4, 1/2]))
test_eq(mask_prior(w), torch.full((7,), .5))
test_fail(lambda: as_weights(loan, [3, 2, 2]), contains='got 3 weights but loan has 4 actionable features')
test_fail(lambda: as_weights(loan, {'income': 0.5}), contains='≥ 1')
test_fail(lambda: as_weights(loan, {'age': 2}), contains="'age' of loan is not actionable")
test_fail(lambda: as_weights(loan, {'salary': 2}), contains="loan has no feature 'salary'")
test_fail(lambda: mask_prior(w, 'flat'), contains="prior must be")

# %% [markdown]
# The weighted cost charges each unit of change in proportion to its weight; with all weights 1 it is
# the cost of chapter 5:

# %%
pools_probe = make_pools('loan')
p1, p3 = recourse_problem(loan, pools_probe), recourse_problem(loan, pools_probe, PAPER_PREFERENCE_WEIGHTS)
xf = pools_probe.recourse.test.x[:4]; xcf = xf.clone(); xcf[:, loan.index('education')] += 0.1
m = torch.zeros(4, 7, dtype=torch.bool); m[:, loan.index('education')] = True
test_close(p3.cost(xf, xcf, m), 3 * p1.cost(xf, xcf, m))

# %% [markdown]
# ## The study
#
# For one SCM and one set of weights, `preference_study` serves the same rejected test people four
# ways — the oracle and CARMA, each unweighted and weighted (CARMA weighted uses the preference prior
# and the paper's weighted-loan hyperparameters) — over the profile's seeds. Every method is scored with
# both costs, so the table shows what each method optimises and what it pays under the other
# objective.

# %%
#| export
PAPER_TABLE7 = pd.DataFrame({   # paper §9 / Table 7 (loan): references shown next to ours, never results
    'method': ['CARMA', 'CARMA (weighted)', 'oracle (weighted)'],
    'paper weighted cost x100': [float('nan'), 9.26, 9.70], 'paper acts': [2.89, 2.26, float('nan')],
    'paper validity %': [99.95, 99.88, float('nan')],
    'paper savings %': [37., 50., float('nan')], 'paper education %': [42., 11., float('nan')]}).set_index('method')

@dataclass
class PreferenceStudy:
    "Unweighted vs weighted oracle and CARMA on one SCM's rejected test people."
    table: pd.DataFrame     # one row per method: mean (and std over seeds) of every metric
    per_seed: pd.DataFrame  # one row per method and seed
    reports: dict           # method -> RecourseReport of the first seed (for the figures)
    weights: torch.Tensor   # (D,) the weights used
    models: dict            # 'CARMA' / 'CARMA (weighted)' -> the trained models, one per seed
    people: torch.Tensor    # (n, D) the rejected test people served

def _row(method, seed, rep: RecourseReport, rep_w: RecourseReport, scm) -> dict:
    pf = rep.per_feature['intervened %']
    return {'method': method, 'seed': seed, 'cost x100': rep.metrics['cost x100'], 'weighted cost x100': rep_w.metrics['cost x100'],
            **{k: rep.metrics[k] for k in ('validity %', 'coverage %', 'acts', 'prob')},
            **{f'{scm.names[j]} %': float(pf[scm.names[j]]) for j in scm.actionable}}

def preference_study(name: str = 'loan', # the SCM
                     weights=PAPER_PREFERENCE_WEIGHTS, # preference weights (by name or position)
                     profile=None, # seeds, epochs and people from the profile
                     seed0: int = 0, verbose: bool = False,
                    ) -> PreferenceStudy:
    "Oracle and CARMA, unweighted and weighted (preference prior), on the same people; SPEC §9."
    p, scm = get_profile(profile), get_scm(name)
    w = as_weights(scm, weights)
    ref = oracle_reference(scm.name, p)
    flow = fit_flow(scm.name, ref.pools.causal, p, verbose=False)
    prob_w = recourse_problem(scm, ref.pools, w)
    score = lambda rec: (evaluate_recourse(ref.problem, ref.clf, ref.people, rec), evaluate_recourse(prob_w, ref.clf, ref.people, rec))
    rows, reports, models = [], {}, {}
    orc_w = cached_oracle(prob_w, ref.clf, ref.people)
    for method, r in (('oracle', ref.result), ('oracle (weighted)', orc_w)):
        reps = score(r)
        reports[method] = reps[0]; rows.append(_row(method, None, *reps, scm))
    seeds = range(seed0, seed0 + p.seeds)
    for method, kw in (('CARMA', {}), ('CARMA (weighted)', {'weights': w, 'prior': 'preference'})):
        models[method] = train_carma_seeds(scm, ref.clf, flow, ref.pools.recourse, seeds, profile=p, verbose=verbose, **kw)
        for s, m in zip(seeds, models[method]):
            reps = score(m.recommend(ref.people))
            if s == seed0: reports[method] = reps[0]
            rows.append(_row(method, s, *reps, scm))
    per_seed = pd.DataFrame(rows)
    g = per_seed.drop(columns='seed').groupby('method', sort=False)
    table = g.mean()
    table.insert(2, 'weighted cost std', g['weighted cost x100'].std())
    table.insert(0, 'seeds', per_seed.groupby('method', sort=False)['seed'].count().clip(lower=1))
    return PreferenceStudy(table, per_seed, reports, w, models, ref.people)

def idle_summary(models: dict, # name -> trained CARMA models (e.g. one per seed), as `PreferenceStudy.models`
                 people: torch.Tensor, # (n, D) the people they serve
                 tol: float = 0.05, # an act is idle when its latent shift is below this (`idle_acts`)
                ) -> pd.DataFrame:
    "Per entry of `models`, averaged over its models: acts, idle acts (chapter 7), and per feature the % of people acting, idle, changing."
    rows = []
    for method, ms in models.items():
        for m in ms:
            mask, idle = idle_acts(m, people, tol)
            share = {k: 100 * t.float().mean(0) for k, t in (('acting', mask), ('idle', idle), ('changing', mask & ~idle))}   # (D,) each
            rows.append({'method': method, 'acts': mask.sum(1).float().mean().item(), 'idle acts': idle.sum(1).float().mean().item(),
                         **{f'{m.names[j]} {k} %': v[j].item() for j in m.actionable.nonzero().flatten().tolist() for k, v in share.items()}})
    out = pd.DataFrame(rows).groupby('method', sort=False).mean()
    out.insert(2, 'acts that change something', out['acts'] - out['idle acts'])
    return out


# %%
profile = get_profile()
study = preference_study('loan', PAPER_PREFERENCE_WEIGHTS, profile)
table7 = study.table.join(PAPER_TABLE7)
save_table(table7.round(3), 'table7_preferences')
print(f'profile: {profile.name} ({profile.seeds} seeds, {len(study.reports["oracle"].cost)} people)')
table7.round(2)

# %% [markdown]
# What to read in the table: the weighted oracle is the best achievable under the weighted cost, so
# *weighted cost* of every other row is at least its value up to the grid's resolution; the unweighted
# methods pay more under the weighted cost because they happily change education. The weighted rows
# should act on fewer features, use savings more and education less.

# %%
t = study.table
assert t.loc['oracle (weighted)', 'weighted cost x100'] <= t.loc['oracle', 'weighted cost x100'] + 1e-9
assert t.loc['oracle (weighted)', 'education %'] <= t.loc['oracle', 'education %']
assert (t['validity %'] > 80).all()

# %% [markdown]
# **Measured** (paper profile, 10 seeds, the 2 311 rejected loan test people): the weights cut
# CARMA's features per person from 3.73 to 1.69 and education from 92 % of people to none, as in the
# paper (both rows polish their amounts, chapter 7, which leaves the mask network, the one choosing the
# features, untouched). Savings becomes weighted CARMA's most used feature (77 %, then loan amount 47 %
# and income 45 %), as in the paper, but its share *falls* from unweighted CARMA's 83 %, where the paper
# saw 37 → 50 %: our unweighted CARMA already acts on almost every feature for almost everyone, so asking
# for fewer features removes savings from some people too (the last section traces this to the
# classifier: with the one the original code trained, the share rises). The oracle shows the paper's
# direction
# (savings 48 → 65 %). Weighted CARMA's weighted cost is 5.62 against the weighted oracle's 6.11
# (0.92×, within the 1.10× we aimed for); its causal validity is 99.2 % on average (seeds 98.9–99.7 %),
# a little below unweighted CARMA's 99.94 %.
#
# Two attempts to move the savings share, both on the validation people (4 seeds) and both rejected by
# the selection score (cost + 1 − validity): mask refinement for the weighted row (chapter 7) either
# sends everyone to savings alone (1.14× the weighted oracle) or, without the prior in its labels, lowers
# savings to 63 %; and making unweighted CARMA act on fewer features with refinement (150 epochs, margins
# 0.011 and 0.03: 2.4 and 2.3 features, savings 51 % and 45 %) scored 0.0350 and 0.0373, worse than
# without refinement (0.0345 at margin 0.02; about 0.030, estimated, at the kept margin 0.011), so the
# unweighted row keeps acting on 3.7 features (`tools/sweep_hparam.py`, which prints each feature's share).

# %% [markdown]
# ## Paper Fig. 4 and Fig. 5
#
# How the weights change CARMA's behaviour (first seed): the number of features each person is asked to
# act on and how often each feature is used (Fig. 4), and the size of the shifts (Fig. 5).

# %%
carmas = {k: study.reports[k] for k in ('CARMA', 'CARMA (weighted)')}
fig = plot_feature_use('loan', carmas, 'loan: unweighted vs weighted CARMA (paper Fig. 4)')
save_figure(fig, 'fig4_preferences_features')
plt.show()

# %%
fig = plot_shifts('loan', carmas, 'loan: shifts of unweighted vs weighted CARMA (paper Fig. 5)')
save_figure(fig, 'fig5_preferences_shifts')
plt.show()


# %% [markdown]
# The paper states its finding in two ways: weighted CARMA "intervenes on fewer features and changes the
# more preferred features like Savings a lot more" (the authors' summary), and, in numbers, savings
# targeted by 37 % → 50 % of people. The first is about the *size* of the change, which Fig. 5 shows;
# the table below puts numbers on it for the people of the figures (first seed): how many act on each
# feature, and by how much those who act change it.

# %%
def shift_table(reports: dict) -> pd.DataFrame:
    "Per actionable feature and method: % of people acting on it, and the median and mean shift among them."
    cols = {}
    for name, rep in reports.items():
        acting = torch.where(rep.mask, rep.shift, torch.nan)[:, loan.actionable]      # shifts of the people who act, else NaN
        cols[(name, 'acting %')] = rep.per_feature['intervened %']
        cols[(name, 'median shift')] = pd.Series(acting.nanmedian(0).values.numpy(), index=rep.per_feature.index)
        cols[(name, 'mean shift')] = rep.per_feature['mean shift (intervened)']
    return pd.DataFrame(cols)

shifts = shift_table(carmas)
save_table(shifts.round(3).set_axis([' '.join(c) for c in shifts.columns], axis=1), 'preferences_shifts')
shifts.round(2)

# %%
if profile.name == 'paper':   # the paper's "changes savings a lot more", measured on the figures' people
    assert shifts.loc['savings', ('CARMA (weighted)', 'median shift')] > 1.5 * shifts.loc['savings', ('CARMA', 'median shift')]

# %% [markdown]
# **Measured** (paper profile, first seed, the 2 311 rejected loan test people;
# `figures/preferences_shifts.md`): among the people asked to act on savings, weighted CARMA's median
# change is 5.31 against unweighted CARMA's 1.71 (means 6.30 and 2.15), while its changes of loan amount
# and income shrink and education is never touched. That is the paper's "changes the more preferred
# features like Savings a lot more", reproduced. What we do not reproduce is the *share* of people asked
# to act on savings (83 → 78 % in this seed, 83 → 77 % over ten; the paper's 37 → 50 %).
#
# The paper's own unweighted numbers cannot all describe one model. The shares of people acting on each
# of loan's four actionable features add up to 100 × the mean number of features acted on: 289 % for
# its 2.89. Savings at 37 % and education at 42 % would leave 210 % for loan amount and income, more than
# two features can hold (200 %). So its percentages come from a model that acted on at most 2.79 features
# (one seed, perhaps), not from the 10-seed mean of 2.89 they are reported with. Ours acts on 3.73
# features (2.71 that change something, below) and already asks 83 % of people to raise savings, which
# leaves little room for a rise.

# %% [markdown]
# ## Acts that change nothing
#
# Why does unweighted CARMA act on 3.73 of loan's four features, where the paper's acts on 2.89? Table 7
# counts an act wherever the mask network chose one, whatever the action network then does with it, and
# chapter 7 found many of unweighted CARMA's acts to be **idle**: a latent shift of (almost) zero, which
# changes nothing (`idle_acts`). With the flat prior π = ½ nothing pushes the mask network away from a
# coin flip on a feature that does not matter; the preference prior does.
#
# `idle_summary` goes over the models of each CARMA row of a study (the study keeps them, one per seed)
# and gives, per feature, the share of people acting on it, the share whose act is idle, and the share whose act
# changes something (the difference).

# %%
idle_table = idle_summary(study.models, study.people)
save_table(idle_table.round(2), 'preferences_idle_acts')
firsts = {k: v[0] for k, v in study.models.items()}
ref = oracle_reference('loan', profile)   # the people, problem and classifier of the study, for the cells below
idle_table.round(2).T

# %%
test_fail(lambda: idle_acts(firsts['CARMA'], ref.people, tol=-1), contains='idle_tol must be a number ≥ 0')
for f in ('education', 'loan_amount', 'income', 'savings'):   # changing = acting − idle, feature by feature
    test_close(idle_table[f'{f} changing %'].values, (idle_table[f'{f} acting %'] - idle_table[f'{f} idle %']).values, eps=1e-4)
one = idle_summary({'first seed': study.models['CARMA'][:1]}, study.people)   # any grouping of models: here one model
test_eq(one.loc['first seed', 'acts'], idle_acts(firsts['CARMA'], study.people)[0].sum(1).float().mean().item())
if profile.name == 'paper':
    assert idle_table.loc['CARMA', 'education idle %'] > 0.8 * idle_table.loc['CARMA', 'education acting %']


# %% [markdown]
# **Measured** (paper profile, ten seeds, `figures/preferences_idle_acts.md`): of unweighted CARMA's 3.73
# acts per person, 1.02 are idle, nearly all of them its education acts (91.4 % of people, of the 92.1 %
# acting on education). Counting only acts that change something, unweighted CARMA acts on 2.71 features
# (the paper's 2.89) and weighted CARMA on 1.65: the weights still cut the number of features, and
# education goes from 0.7 % to none. The savings share does not change its direction: 78.5 % of people
# change savings under unweighted CARMA, 77.0 % under weighted. Unweighted CARMA really does move loan
# amount (99 % of people), income (93 %) and savings (78 %) together: with a quadratic cost, a change
# split over several features costs less than the same change in one, and the flat prior does not charge
# for the extra features. The preference prior does, and the cheapest feature to keep is savings, which
# is why it stays the most used lever; but there is no room for its share to rise. The last section
# reruns the study with the classifier the original code trained; there the share does rise.

# %% [markdown]
# Fig. 4 again, for the same people and the first seed, with the idle acts left out
# (`recommend(..., idle_tol=0.05)`, what `carma-nb recommend` serves): the features people are actually
# asked to change.

# %%
def served_figure(st: PreferenceStudy, title: str, name: str) -> tuple[dict, pd.DataFrame]:
    "Fig. 4 of each CARMA row's first-seed recommendations with idle acts left out (drawn, saved); their reports and a summary."
    served = {}
    for method, models in st.models.items():
        m = models[0]
        r = m.recommend(st.people, idle_tol=0.05)
        served[method] = evaluate_recourse(ref.problem, m.clf, st.people, r)
    save_figure(plot_feature_use('loan', served, title), name)
    plt.show()
    summary = pd.DataFrame({k: {'acts': r.metrics['acts'], 'validity %': r.metrics['validity %'], **r.per_feature['intervened %'].add_suffix(' %')}
                            for k, r in served.items()}).astype(float).round(2)
    return served, summary

served, summary = served_figure(study, 'loan: unweighted vs weighted CARMA, idle acts left out (first seed)', 'fig4_preferences_features_no_idle')
summary

# %%
for method in served:   # leaving idle acts out only removes acts, and keeps (almost) every person's recourse
    assert served[method].metrics['acts'] <= study.reports[method].metrics['acts'] + 1e-9
    assert served[method].metrics['validity %'] >= study.reports[method].metrics['validity %'] - 0.5

# %% [markdown]
# In this seed the two rows ask the same share of people to change savings (77.5 and 77.6 %); what the
# weights change is everything else: loan amount and income for 39 and 44 % of people instead of 100
# and 94 %, education for none instead of 2 %, and 1.60 features per person instead of 2.73. So with
# idle acts left out the paper's direction holds for the number of features and for education, and
# savings neither gains nor loses people: the weights move the work onto savings by making each
# person's savings change larger (the shift table above), not by asking more people to change it.

# %% [markdown]
# The same comparison for the oracle, which knows the true SCM and searches the whole grid: the effect
# of the weights on the best possible actions, against which CARMA's shift is judged.

# %%
fig = plot_feature_use('loan', {k: study.reports[k] for k in ('oracle', 'oracle (weighted)')}, 'loan: unweighted vs weighted oracle')
save_figure(fig, 'preferences_oracle_features')
plt.show()

# %% [markdown]
# ## With the original code's classifier
#
# Chapter 3 found that the original code trained its classifiers with plain SGD, which leaves the loan
# classifier at 90 % validation accuracy where Adam reaches 99 %. CARMA learns from the classifier's
# gradients, so the classifier decides which features are worth moving. Here the whole study runs again
# (oracle and CARMA, unweighted and weighted, every seed of the profile) with the SGD classifier
# (`clf_optimizer='sgd'`). It rejects a slightly different set of test people (2 321 instead of 2 311).

# %%
study_sgd = preference_study('loan', PAPER_PREFERENCE_WEIGHTS, profile)
idle_sgd = idle_summary(study_sgd.models, study_sgd.people)
save_table(study_sgd.table.join(PAPER_TABLE7).round(3), 'table7_preferences_sgd_classifier')
save_table(idle_sgd.round(2), 'preferences_idle_acts_sgd_classifier')
cols = ['acts', 'acts that change something', 'education acting %', 'education changing %', 'savings acting %', 'savings changing %']
def with_oracle(st, idle):   # CARMA's rows, with the weighted oracle's weighted cost on the same people alongside
    out = idle[cols].join(st.table[['weighted cost x100', 'validity %']])
    out['weighted oracle cost x100'] = st.table.loc['oracle (weighted)', 'weighted cost x100']
    return out
by_clf = pd.concat({'Adam (SPEC)': with_oracle(study, idle_table), 'SGD (original code)': with_oracle(study_sgd, idle_sgd)},
                   names=['classifier', 'method'])
by_clf = by_clf.join(PAPER_TABLE7[['paper acts', 'paper education %', 'paper savings %']], on='method')
save_table(by_clf.round(2), 'preferences_by_classifier')
by_clf.round(2)

# %%
if profile.name == 'paper':
    a, g = by_clf.loc['Adam (SPEC)'], by_clf.loc['SGD (original code)']
    for t in (a, g):   # fewer features, no education, cost within 1.10x of the weighted oracle: with either classifier
        assert t.loc['CARMA (weighted)', 'acts that change something'] < t.loc['CARMA', 'acts that change something']
        assert t.loc['CARMA (weighted)', 'education changing %'] <= t.loc['CARMA', 'education changing %']
        assert t.loc['CARMA (weighted)', 'weighted cost x100'] <= 1.10 * t.loc['CARMA (weighted)', 'weighted oracle cost x100']
    assert g.loc['CARMA (weighted)', 'savings changing %'] > g.loc['CARMA', 'savings changing %']   # the paper's direction ...
    assert a.loc['CARMA (weighted)', 'savings changing %'] < a.loc['CARMA', 'savings changing %']   # ... which SPEC's classifier misses


# %% [markdown]
# **Measured** (paper profile, ten seeds each, `figures/preferences_by_classifier.md`; full tables in
# `figures/table7_preferences_sgd_classifier.md` and `figures/preferences_idle_acts_sgd_classifier.md`):
#
# - With the SGD classifier, unweighted CARMA acts on all four features for almost everyone (4.00 acts,
#   3.21 that change something). Its education acts are mostly idle, but a third of people are asked to
#   change education (33 %).
# - Weighted CARMA acts on 1.72 features, never on education, and asks 98.7 % of people for a savings
#   change, against 88.1 % under unweighted CARMA. That is the paper's direction: savings targeted more.
#   Counting every act, including idle ones, both rows act on savings for (almost) everyone (100 and
#   99.7 %), so the rise shows only among the acts that change something.
# - Weighted CARMA's weighted cost is 7.55 against the weighted oracle's 7.91 (0.95×), with causal
#   validity 99.85 %.
# - With SPEC's Adam classifier the same study gives savings 78.5 → 77.0 %, the miss described above.
#
# So the paper's savings effect appears with the classifier the original code trained, and not with
# SPEC's converged one. The cell below looks at who is served *without* a savings change, first seed.

# %%
def income_split(st: PreferenceStudy, method: str) -> dict:
    "Share of people with negative income, among those whose served action changes savings and among the others."
    m, x = st.models[method][0], st.people
    mask, idle = idle_acts(m, x)
    sav, neg = (mask & ~idle)[:, loan.index('savings')], x[:, loan.index('income')] < 0
    return {'savings changing %': 100 * sav.float().mean().item(), 'income < 0 among them %': 100 * neg[sav].float().mean().item(),
            'income < 0 among the others %': 100 * neg[~sav].float().mean().item() if (~sav).any() else float('nan')}

split = pd.DataFrame({(c, k): income_split(st, k) for c, st in (('Adam (SPEC)', study), ('SGD (original code)', study_sgd))
                      for k in ('CARMA', 'CARMA (weighted)')}).T
if profile.name == 'paper':   # with Adam, savers mostly have negative income and the others mostly positive
    w = split.loc[('Adam (SPEC)', 'CARMA (weighted)')]
    assert w['income < 0 among them %'] > 50 > w['income < 0 among the others %'], split
split.round(1)

# %% [markdown]
# With the Adam classifier, the people weighted CARMA serves without a savings change mostly have
# positive income (70 % of them), while those who do change savings mostly have negative income (81 %).
# In the loan SCM savings follow income only when income is positive ($S = -4 + 1.5\cdot 1[I>0]\cdot I +
# u_S$), and the cost charges only intervened features. So for a person with positive income, raising
# income raises savings for free, and the converged classifier rewards that route even at weight 2.
# With the SGD classifier weighted CARMA takes it for only 1 % of people. This package keeps SPEC's
# classifier, so its headline result is the miss. The SGD rows show that the savings effect belongs to
# the classifier CARMA explains, not to CARMA itself.
#
# Fig. 4 for the SGD classifier, first seed, idle acts left out:

# %%
served_sgd, summary_sgd = served_figure(study_sgd, 'loan, SGD classifier: unweighted vs weighted CARMA, idle acts left out (first seed)',
                                        'fig4_preferences_features_sgd_classifier')
summary_sgd


# %% [markdown]
# In this seed the weights take people off loan amount (100 → 4 %) and education (26 → 0 %) and move
# them to savings (88 → 99 %), at 1.74 features per person instead of 3.14. This is the shape of the
# paper's Fig. 4, which SPEC's classifier does not give (the no-idle figure above: savings 77.5 and
# 77.6 %).

# %% [markdown]
# ### Over draws of data
#
# Everything above uses one draw of the data (pool seed 0). Chapters 3 and 4 found that one draw can
# decide whether a comparison with the paper passes. `tools/preference_draws.py --draws 8 --seeds 3`
# (and the same with `--clf-optimizer sgd`) repeats the comparison on 8 independent draws of every
# pool. Each draw gets its own classifier, flow, rejected test people, and 3 seeds of each CARMA
# variant, and `idle_summary` counts their acts. The two runs take about 25 minutes each on this 2-core
# machine, so their output is committed as `figures/preference_draws.txt` and the table below is quoted
# from it. The cell after it checks that the file's draw 0 is this chapter's first three seeds.
#
# | classifier | draws where weighted CARMA acts on fewer features | … education less (acting / changing) | … savings more (acting / changing) | savings changing %, unweighted → weighted (mean of the 8 draws) |
# |---|---|---|---|---|
# | Adam (SPEC) | 8 of 8 | 8 / 8 of 8 | 1 / 3 of 8 | 79.7 → 77.0 |
# | SGD (original code) | 8 of 8 | 8 / 8 of 8 | 0 / 8 of 8 | 89.4 → 98.1 |
#
# - **Fewer features and less education hold on every draw, with either classifier.**
# - **The savings result depends on the classifier, not on the draw.** With SGD, weighted CARMA asks
#   more people to change savings on all 8 draws. (It acts on savings for almost everyone in both rows:
#   100 % and 99.8 % on average. So acting can only stay flat or fall, and it falls by a few people on
#   every draw.) With Adam, the share of people changing savings rises on 3 of 8 draws and falls on 5,
#   by 2.7 points on average.
# - So draw 0 is not an unlucky case here. The miss with SPEC's classifier is the pattern, and the
#   paper's direction with the original code's classifier is the pattern.

# %%
def draw0_rows(text: str, optimizer: str) -> pd.DataFrame:
    "The draw-0 rows (people and `cols`) of one run printed by tools/preference_draws.py."
    block = text.split(f'loan, paper profile, {optimizer} classifier')[1].split('draw 0 (')[1].split('\ndraw 1 (')[0]
    rows = {l.rsplit(None, 7)[0]: [float(v) for v in l.split()[-7:]] for l in block.splitlines() if l.startswith('CARMA')}
    return pd.DataFrame(rows, index=['people', *cols]).T

pref_draws = (project_root()/'figures'/'preference_draws.txt').read_text()
for opt, st in (('adam', study), ('sgd', study_sgd)):
    d0 = draw0_rows(pref_draws, opt)
    test_eq(list(d0.index), ['CARMA', 'CARMA (weighted)'])
    if profile.name == 'paper':   # the file's draw 0 is this chapter's first three seeds, on the same people
        test_eq(d0['people'].tolist(), [len(st.people)] * 2)
        ours = idle_summary({k: v[:3] for k, v in st.models.items()}, st.people)[cols]
        test_close(d0[cols].values.ravel(), ours.values.ravel(), eps=0.006)

# %%
#| hide
import nbdev; nbdev.nbdev_export()

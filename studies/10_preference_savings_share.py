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

# %% [markdown]
# # Study: does weighted CARMA ask more people to change savings?
#
# **Question.** In the paper's preference case study (Table 7, chapter 10), the loan weights raise the
# share of people asked to change savings from 37 % to 50 %. Our first measurements of chapter 10 did not
# show that rise. Is that the paper's numbers, the way acts are counted, the one draw of data, or the
# classifier CARMA explains?
#
# *Not part of the course, not run by CI.* This study presents measurements made once and committed; it
# does not re-run them.

# %% [markdown]
# ## Where the numbers come from
#
# Everything here was measured at the paper profile (10 CARMA seeds unless said otherwise; loan's
# rejected test people) with the library as of commit 6bcea35: CARMA trained with our additions of that
# time (restarts, amount polishing, the classifier temperature) and, unless labelled SGD, the loan
# classifier trained with Adam, as the paper's appendix says. Chapter 10 at that commit wrote the tables
# below (its cells are in the history of `nbs/10_preferences.py`), and `studies/tools/preference_draws.py`
# wrote `preference_draws.txt`. All are committed in `figures/studies/`; the few numbers that only
# existed as notebook outputs (the first-seed summaries of sections 3 and 4) are transcribed here and
# written to `figures/studies/` by this study. The library's defaults have changed since (the paper's
# CARMA algorithm, SGD-trained classifiers), and re-running the whole set takes several hours on this
# machine, so nothing is re-run.

# %%
import os
import re

import pandas as pd
from carma_nb.core import project_root, save_table
from carma_nb.preferences import PAPER_TABLE7

STUDY = project_root() / 'figures' / 'studies'
os.environ['CARMA_FIGURE_DIR'] = str(STUDY)   # this study writes to figures/studies/ only
read = lambda name, **kw: pd.read_csv(STUDY / f'{name}.csv', **kw)

# %% [markdown]
# ## 1. The paper's own numbers
#
# The shares of people acting on each of loan's four actionable features add up to 100 × the mean number
# of features acted on. For unweighted CARMA the paper reports 2.89 features, savings 37 % and education
# 42 %: that leaves 210 % for loan amount and income, more than two features can hold.

# %%
c = PAPER_TABLE7.loc['CARMA']
left = 100 * c['paper acts'] - c['paper savings %'] - c['paper education %']
print(f"left for loan amount and income: {left:.0f} % (at most 200 %); the shares fit a model acting on "
      f"at most {(200 + c['paper savings %'] + c['paper education %']) / 100:.2f} features")
assert left > 200

# %% [markdown]
# So the paper's unweighted percentages come from a model acting on at most 2.79 features — one seed,
# perhaps — and not from the 10-seed mean of 2.89 they are reported with. The direction (savings up,
# education down) is the claim to test, not the exact shares.
#
# ## 2. What chapter 10 measured
#
# With the Adam classifier (Table 7 rows, 10 seeds, 2 311 people): the weights cut CARMA's features per
# person and its education requests, as in the paper, but the savings share *falls*. The oracle, which
# knows the true SCM, shows the paper's direction.

# %%
t7 = read('table7_preferences_adam_classifier', index_col='method')
t7[['acts', 'education %', 'savings %', 'weighted cost x100', 'validity %', 'paper savings %']].round(2)

# %%
assert t7.loc['CARMA (weighted)', 'savings %'] < t7.loc['CARMA', 'savings %']
assert t7.loc['oracle (weighted)', 'savings %'] > t7.loc['oracle', 'savings %']

# %% [markdown]
# ![the oracle, unweighted and weighted](../figures/studies/preferences_oracle_features.png)
#
# ## 3. Acts that change nothing
#
# Table 7 counts an act wherever the mask network chose one, whatever the action network does with it.
# Many of unweighted CARMA's acts are **idle**: a latent shift of (almost) zero, so the feature keeps the
# value it would have had anyway (`studies/tools/idle.py`; tolerance 0.05). With the flat prior nothing
# pushes the mask network away from a coin flip on a feature that does not matter. Counting only the acts
# that change something:

# %%
idle = read('preferences_idle_acts', index_col='method')
idle[['acts', 'idle acts', 'acts that change something', 'education acting %', 'education changing %',
      'savings acting %', 'savings changing %']].round(2).T

# %% [markdown]
# Unweighted CARMA's education acts are almost all idle (91.4 of 92.1 % of people), so it acts on 2.71
# features that change something — close to the paper's 2.89. But the savings share still does not rise
# (78.5 → 77.0 %): unweighted CARMA already moves loan amount, income and savings together for almost
# everyone (with a quadratic cost a change split over several features is cheaper than the same change in
# one, and the flat prior does not charge for the extra features), so there is no room for savings to
# gain people. The first seed served without its idle acts (what `carma-nb recommend` served then) tells
# the same story:

# %%
# transcribed: chapter 10's outputs at commit 6bcea35, first seed, idle acts left out
served = pd.DataFrame({
    'classifier': ['Adam'] * 2 + ['SGD'] * 2, 'method': ['CARMA', 'CARMA (weighted)'] * 2,
    'acts': [2.73, 1.60, 3.14, 1.74], 'validity %': [100.00, 98.92, 99.96, 99.66],
    'education %': [2.12, 0.00, 26.28, 0.00], 'loan_amount %': [99.61, 38.55, 100.00, 3.62],
    'income %': [94.07, 43.96, 100.00, 71.35], 'savings %': [77.54, 77.59, 87.98, 98.92],
}).set_index(['classifier', 'method'])
save_table(served, 'preferences_served_no_idle')
served

# %% [markdown]
# ![Adam classifier, idle acts left out](../figures/studies/preferences_features_no_idle.png)
#
# ## 4. The classifier
#
# The original code trained its classifiers with plain SGD (chapter 3), which leaves the loan classifier
# far less sharp than Adam's. CARMA learns from the classifier's gradients, so the classifier decides
# which features are worth moving. The whole study rerun with the SGD classifier (10 seeds, 2 321 rejected
# people):

# %%
by_clf = read('preferences_by_classifier', index_col=['classifier', 'method'])
by_clf[['acts that change something', 'education changing %', 'savings acting %', 'savings changing %',
        'weighted cost x100', 'weighted oracle cost x100', 'validity %', 'paper savings %']].round(2)

# %%
sgd, adam = by_clf.loc['SGD (original code)'], by_clf.loc['Adam (paper appendix)']
assert sgd.loc['CARMA (weighted)', 'savings changing %'] > sgd.loc['CARMA', 'savings changing %']
assert adam.loc['CARMA (weighted)', 'savings changing %'] < adam.loc['CARMA', 'savings changing %']

# %% [markdown]
# With the SGD classifier, weighted CARMA asks 98.7 % of people for a savings change against 88.1 %
# unweighted: the paper's direction. (Counting every act, both rows act on savings for almost everyone,
# 99.7 and 100 %; the rise shows among the acts that change something.) Its weighted cost is 0.95× the
# weighted oracle's, with validity 99.85 %.
#
# Who is served *without* a savings change (first seed)? In loan, savings follow income only when income
# is positive ($S = -4 + 1.5\cdot 1[I>0]\cdot I + u_S$) and the cost charges only intervened features,
# so for a person with positive income, raising income raises savings for free.

# %%
savers = pd.DataFrame({   # transcribed: chapter 10's outputs at commit 6bcea35, first seed
    'classifier': ['Adam'] * 2 + ['SGD'] * 2, 'method': ['CARMA', 'CARMA (weighted)'] * 2,
    'savings changing %': [77.5, 77.6, 88.0, 98.9],
    'income < 0 among those changing savings %': [83.9, 81.3, 77.0, 70.7],
    'income < 0 among the others %': [21.4, 30.1, 19.7, 19.2],
}).set_index(['classifier', 'method'])
save_table(savers, 'preferences_savers_income')
savers


# %% [markdown]
# With the Adam classifier, the people weighted CARMA serves without a savings change mostly have positive
# income (70 %): the sharp classifier rewards the income route even at weight 2. With the SGD classifier
# weighted CARMA takes that route for about 1 % of people.
#
# ![SGD classifier, idle acts left out](../figures/studies/preferences_features_no_idle_sgd_classifier.png)
#
# ## 5. Over draws of data
#
# One draw of data can decide a comparison (chapters 3 and 4). `preference_draws.py --draws 8 --seeds 3`,
# once per classifier, repeats the comparison on 8 independent draws of every pool, each with its own
# classifier, flow, rejected test people and 3 seeds of each CARMA variant.

# %%
def parse_draws(text: str) -> pd.DataFrame:
    "One row per (classifier, draw, variant) of the runs printed by preference_draws.py."
    rows = []
    for run in text.split('loan, paper profile, ')[1:]:
        clf = run.split(' classifier')[0]
        for draw, block in re.findall(r'draw (\d+) \(\d+ s\)\n(.*?)(?=\ndraw |\n\nof )', run, re.S):
            for line in block.splitlines():
                if line.startswith('CARMA'):
                    variant, values = line.rsplit(None, 7)[0], [float(v) for v in line.split()[-7:]]
                    rows.append({'classifier': clf, 'draw': int(draw), 'variant': variant, 'values': values})
    cols = ['people', 'acts', 'acts that change something', 'education acting %', 'education changing %',
            'savings acting %', 'savings changing %']
    df = pd.DataFrame(rows)
    return pd.concat([df.drop(columns='values'), pd.DataFrame(df['values'].tolist(), columns=cols)], axis=1)

draws = parse_draws((STUDY / 'preference_draws.txt').read_text())
wide = draws.pivot(index=['classifier', 'draw'], columns='variant')
more = lambda col: (wide[(col, 'CARMA (weighted)')] > wide[(col, 'CARMA')]).groupby('classifier').sum()
fewer = lambda col: (wide[(col, 'CARMA (weighted)')] < wide[(col, 'CARMA')]).groupby('classifier').sum()
summary = pd.DataFrame({
    'draws': wide.groupby('classifier').size(),
    'fewer features (changing)': fewer('acts that change something'),
    'less education (changing)': fewer('education changing %'),
    'more savings (acting)': more('savings acting %'), 'more savings (changing)': more('savings changing %'),
    **{f'savings changing %, {name}': wide[('savings changing %', v)].groupby('classifier').mean()
       for name, v in (('unweighted', 'CARMA'), ('weighted', 'CARMA (weighted)'))},
})
save_table(summary.round(2), 'preference_draws_summary')
summary.round(1)

# %%
assert (summary['draws'] == 8).all() and (summary['fewer features (changing)'] == 8).all()
assert (summary['less education (changing)'] == 8).all()
assert summary['more savings (changing)'].to_dict() == {'adam': 3, 'sgd': 8}

# %% [markdown]
# - Fewer features and less education hold on every draw, with either classifier.
# - The savings result depends on the classifier, not on the draw: with SGD, weighted CARMA asks more
#   people to change savings on all 8 draws; with Adam on 3 of 8, and on average a little fewer.
# - Draw 0, the chapter's, is not an unlucky case: it shows each classifier's pattern.
#
# **Answer.** The paper's rise in the share of people asked to change savings belongs to the classifier
# CARMA explains: with the classifier the original code trained (plain SGD) weighted CARMA asks more people
# to change savings on every one of 8 draws (89 → 98 % on average, counting acts that change something),
# with Adam's sharper classifier it does not (80 → 77 %), while fewer features and no education hold with
# either — and the paper's own unweighted shares cannot all describe its 2.89-feature model.

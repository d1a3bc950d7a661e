# %% [markdown]
# # Study: why do two flows miss the paper's counterfactual error?
#
# **Question.** Chapter 4's causal normalizing flows come within 1.1× of the paper's counterfactual
# error on five of the seven SCMs, but not on collider-lin (0.023 against 0.012) or triangle-nlin
# (0.046 against 0.032). Is the gap the flow's seed, its training settings, the model itself, the
# amount of data, or the one draw of data both numbers come from?
#
# Not part of the course: this study is run by hand at the paper profile (never by CI) and writes to
# `figures/studies/`. Its measurements come from the scripts in `studies/tools/`, whose printed output
# is committed under `figures/studies/` and read here: `flow_cf_diagnostics.txt`,
# `flow_seeds_patience.txt` and `flow_data_size.txt` (about an hour of one core in all) and
# `flow_cf_draws.txt` (31 draws of data per SCM, about 30 minutes per SCM, not re-run for this
# notebook). The first line of each run in those files is the command that printed it.

# %%
import os
import re
import sys

import numpy as np
import pandas as pd
import seaborn as sns
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, NullFormatter
from fastcore.test import test_eq, test_close

from carma_nb.core import get_profile, project_root, save_figure, save_table
from carma_nb.flow import PAPER_FLOW_CF_ERROR, flow_table

sys.path.insert(0, str(project_root()/'studies'/'tools'))
from draws import read_draws

os.environ['CARMA_FIGURE_DIR'] = str(project_root()/'figures'/'studies')   # this study's outputs
RESULTS = project_root()/'figures'/'studies'
profile = get_profile('paper')
MISSES = ['collider-lin', 'triangle-nlin']

# %% [markdown]
# ## 1. The gap
#
# Chapter 4's table at the paper's settings (20 000 training rows, 1 000 epochs, flow seed 0).

# %%
table = flow_table(profile)
gap = table[['hidden', 'cf error', 'cf error (std units)', 'paper cf error (reference)', 'cf error / paper']]
gap.round(4)

# %%
ratio = table['cf error / paper']
test_eq(set(ratio.index[ratio > 1.1]), set(MISSES))
gap.loc[MISSES].round(4)

# %% [markdown]
# In units of each feature's training standard deviation triangle-nlin's error (0.026) is below the
# paper's value, so part of its gap may be a difference in how the metric was scaled; collider-lin's
# (0.020) is not.
#
# ## 2. The flow's seed
#
# `flow_data_size.py SCM --runs 20000:1000 --seeds 0,…,9`: ten flow seeds on the same data.

# %%
_HEAD = re.compile(r'^(\S+): counterfactual error on the same .* plateau patience (\d+)$')
_ROW = re.compile(r'^\s+(\d+) rows,\s+(\d+) epochs \(\s*\d+ steps\), flow seed (\d+): ([0-9.]+)')

def read_runs(path) -> pd.DataFrame:
    "One row per fitted flow printed by studies/tools/flow_data_size.py (without --draws)."
    rows, head = [], None
    for line in (RESULTS/path).read_text().splitlines():
        if m := _HEAD.match(line): head = (m[1], int(m[2]))
        elif m := _ROW.match(line):
            rows.append({'scm': head[0], 'patience': head[1], 'rows': int(m[1]), 'epochs': int(m[2]),
                         'seed': int(m[3]), 'cf error': float(m[4])})
    return pd.DataFrame(rows)

runs = read_runs('flow_seeds_patience.txt')
seeds = runs[(runs['patience'] == 30)].pivot(index='seed', columns='scm', values='cf error')[MISSES]
seeds.T.round(4)

# %%
test_eq(seeds.shape, (10, 2))
for name in MISSES:
    test_close(seeds.loc[0, name], table.loc[name, 'cf error'], eps=6e-5)      # seed 0 is chapter 4's flow
    assert (seeds[name] > 1.1 * PAPER_FLOW_CF_ERROR[name]).all()              # no seed comes within 1.1x
assert (seeds.max() / seeds.min() < 1.15).all()                              # seeds move the error < 15 %
test_eq(seeds.agg(['min', 'max']).round(3).T.values.tolist(), [[0.021, 0.024], [0.045, 0.049]])
seeds.agg(['min', 'max']).round(4)

# %% [markdown]
# Ten seeds span 0.021–0.024 on collider-lin and 0.045–0.049 on triangle-nlin: none comes within 1.1×
# of the paper's value. The whole error sits in $x_3$, the node with three parents.
#
# ## 3. The model and its training (collider-lin)
#
# `flow_cf_diagnostics.py collider-lin` takes collider-lin's error apart. Its output:

# %%
diagnostics = (RESULTS/'flow_cf_diagnostics.txt').read_text()
print(diagnostics)

# %%
value = lambda label: float(re.search(re.escape(label) + r'\s*:?\s*([0-9.]+)', diagnostics)[1])
floor, paper_val = value('least-squares floor, same training rows (test rows):'), value('paper settings')
variants = {k: value(k) for k in ('batch 1 000', '3× the epochs', 'conditioner 4', 'conditioner 8',
                                  'conditioner 128', 'scale-variance penalty 10:')}
assert floor < 0.005 < 0.018 < min(variants.values()), (floor, variants)
pd.Series({'paper settings': paper_val, **variants, 'least-squares SCM (data floor)': floor},
          name='collider-lin cf error, validation rows').round(4)

# %% [markdown]
# - **The data are not the limit**: the SCM whose linear equations are fitted by least squares on the
#   same 20 000 training rows has a counterfactual error of 0.004.
# - **Nor is the optimiser**: batches of 1 000 and three times the epochs leave the error where it was
#   (0.022, 0.023 against 0.024 on the validation rows). So did weight decay (AdamW 0.01 and 0.1),
#   keeping the best-validation epoch, and 300 more epochs at $10^{-4}$ (0.022–0.024); those three
#   were one-off runs of a modified trainer, not kept in the repository.
# - **Nor the scale**: the learned log-scale $s_3$ varies with the parents (standard deviation 0.011
#   over the test rows) though the true noise of $x_3$ has one scale; a flow trained with a penalty on
#   that variation (10 × the batch variance of every $s_j$) brings it down to 0.002 but its error only
#   to 0.023.
# - **Nor the conditioner's size**: widths 4, 8 and 128 give 0.019, 0.021 and 0.022.
# - **Nor a wrong slope**: removing from each row's error the part linear in the change of $x_1$ leaves
#   almost all of it. What is left varies from person to person: the learned shift $b_3$ is not exactly
#   linear and additive in the parents, so its change under $x_1 \to x_1'$ scatters around the true
#   $0.25\,(x_1' - x_1)$.
#
# ## 4. More data
#
# `flow_data_size.py SCM --runs 80000:250,80000:1000,320000:250 --seeds 0,1` fits the same flow on
# larger training splits; every flow answers the same questions (the same 2 500 test rows and
# intervention values). The 20 000-row row is section 2's seeds 0 and 1.

# %%
size = pd.concat([runs[(runs['patience'] == 30) & (runs['seed'] <= 1)], read_runs('flow_data_size.txt')])
size = size.pivot_table(index=['rows', 'epochs'], columns=['scm', 'seed'], values='cf error')[MISSES]
size.columns = [f'{scm}, seed {seed}' for scm, seed in size.columns]
size = size.reset_index()
save_table(size.round(4), 'flow_data_size')
size.round(4)

# %%
at = lambda rows, epochs: size[(size['rows'] == rows) & (size['epochs'] == epochs)].iloc[0]
tri = [f'triangle-nlin, seed {s}' for s in (0, 1)]
col = [f'collider-lin, seed {s}' for s in (0, 1)]
assert (at(80_000, 1000)[tri] <= 1.1 * PAPER_FLOW_CF_ERROR['triangle-nlin']).all()        # 4x the rows: within
assert (at(80_000, 1000)[col] / PAPER_FLOW_CF_ERROR['collider-lin']).between(1.1, 1.3).all()
assert (at(80_000, 250)[col + tri].values < at(20_000, 1000)[col + tri].values).all()       # same steps, more rows
assert (at(320_000, 250)[col] < PAPER_FLOW_CF_ERROR['collider-lin']).all()                  # 16x: below the paper

# %% [markdown]
# Four times the rows (80 000, 1 000 epochs) bring triangle-nlin within 1.1× of the paper on both seeds
# (0.026, 0.030) and collider-lin to 1.1–1.3× (0.015, 0.014). Both errors fall already at the paper's
# number of gradient steps (80 000 rows, 250 epochs), so it is the rows, not the extra steps. Sixteen
# times the rows bring collider-lin below the paper's value on both seeds (0.006, 0.010), while
# triangle-nlin's two seeds then disagree (0.038 and 0.017; we did not look into why). So at the
# paper's 20 000 rows most of the error is the conditioner's estimation error, which shrinks as the
# rows grow.
#
# ## 5. The original code's schedule
#
# The original code's flow settings match the paper's except the learning-rate plateau patience: 60
# epochs instead of 30. With 60 (`--patience 60`, 20 000 rows, 1 000 epochs, seeds 0 and 1) the errors
# stay where they were (collider-lin 0.022 and 0.022, triangle-nlin 0.043 and 0.051):

# %%
patience = runs[runs['seed'] <= 1].pivot_table(index='patience', columns=['scm', 'seed'], values='cf error')
patience = patience[MISSES]
patience.columns = [f'{scm}, seed {seed}' for scm, seed in patience.columns]
assert (patience.loc[60] > 1.1 * np.repeat([PAPER_FLOW_CF_ERROR[n] for n in MISSES], 2)).all()   # no better
patience.round(4)

# %% [markdown]
# ## 6. The draw of data
#
# Ten seeds on one draw change the error by less than 15 %; a new draw of the 25 000 rows changes it
# much more. `flow_data_size.py SCM --draws 31` fits the flow at the paper's settings (flow seed 0) on
# 31 independent draws of the causal-model pool (pool seeds 0–30) and scores each on its own draw's test
# split and training percentiles, as the original code scored its one draw.

# %%
draws = read_draws(RESULTS/'flow_cf_draws.txt').rename(columns={'run': 'scm'})
draws['paper'] = draws['scm'].map(PAPER_FLOW_CF_ERROR)
draws['cf error / paper'] = draws['value'] / draws['paper']
by = draws.groupby('scm', sort=False)
spread = pd.DataFrame({'draw 0': by['value'].first(), 'min': by['value'].min(), 'median': by['value'].median(),
                       'max': by['value'].max(), 'paper': by['paper'].first(),
                       'median / paper': by['cf error / paper'].median(),
                       'draws ≤ paper': by['cf error / paper'].apply(lambda r: int((r <= 1).sum())),
                       'draws ≤ 1.1× paper': by['cf error / paper'].apply(lambda r: int((r <= 1.1).sum()))})
save_table(spread.round(4), 'flow_cf_draws_summary')
spread.round(4)

# %%
test_eq(set(by.size()), {31})
test_close(spread['draw 0'].reindex(table.index).values, table['cf error'].values, eps=6e-5)   # draw 0 = ch 4
assert (spread['max'] / spread['min']).between(1.25, 3.0).all()
test_eq(spread.loc['collider-lin', 'draws ≤ 1.1× paper'], 0)
inside = (spread['min'] <= spread['paper']) & (spread['paper'] <= spread['max'])
test_eq(set(inside.index[~inside]), {'collider-lin'})
test_eq(spread.loc[['chain-lin', 'triangle-nlin'], 'draws ≤ paper'].tolist(), [7, 4])

# %%
fig, ax = plt.subplots(figsize=(9, 3.6))
sns.stripplot(data=draws, x='scm', y='cf error / paper', size=3.5, alpha=.7, ax=ax, color='#1b9e77')
ax.axhline(1, color='k', lw=.8); ax.axhline(1.1, color='k', lw=.8, ls='--')
ax.set_yscale('log'); ax.set_xlabel('')
ax.set_yticks([0.6, 0.8, 1, 1.5, 2, 2.5]); ax.yaxis.set_major_formatter(FormatStrFormatter('%g'))
ax.yaxis.set_minor_formatter(NullFormatter())
ax.set_ylabel('cf error / paper (log scale)')
ax.set_title("flow counterfactual error on 31 draws of data, relative to the paper's (dashed: 1.1×)",
             fontsize=10)
save_figure(fig, 'flow_cf_draws')
plt.show()

# %% [markdown]
# - **The draw moves the error by a factor of 1.3 to 2.9** from the best draw to the worst, so one draw
#   against one draw, the comparison chapter 4's 1.1× target makes, is partly luck.
# - **Six of seven SCMs are consistent with the paper**: its value lies inside the range of our 31
#   draws. On two (chain-lin, triangle-nlin) it sits at the good end of that range, where a lucky draw
#   would put it: 7 and 4 of our 31 draws do as well.
# - **collider-lin is the exception**: the paper's 0.012 is below every one of our 31 draws.
#
# ## 7. The original code, line by line
#
# The original code's flow imports the Causal NF authors' copy of zuko (psanch21/causal-flows). Its
# masked conditioner (the same unique-row precedence masks), the affine transform (log-scale
# soft-clipped at log 10⁻³), ELU, one transform, the 0.8/0.1/0.1 split of 25 000 rows, batch 4 000 and
# the plateau schedule all match ours. The counterfactual is the same computation, and its error is the
# same per-row Euclidean distance averaged over the 25th, 50th and 75th training percentiles (the
# original rounds the three values to two decimals; we do not). We found no difference that would
# explain collider-lin.
#
# ## Answer
#
# Neither the seed, the optimiser, the plateau schedule, the conditioner's width nor the scale explains
# the two misses: at the paper's 20 000 training rows the error is mostly the conditioner's estimation
# error, which more rows shrink below the paper's values, and on every SCM but collider-lin the paper's
# value lies within the spread of 31 draws of data, while collider-lin's 0.012 stays below all of ours
# for a reason we did not find.

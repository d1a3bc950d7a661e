# %% [markdown]
# # Study: Table 1 with the original code's classifiers, and the paper's algorithm on them
#
# **Question.** Our first Table 1 used classifiers trained with Adam, as the paper's appendix says,
# and a CARMA with five additions of ours. How much of the distance to the paper's Table 1 comes from
# the classifier (the original code trained with plain SGD), and how much from the algorithm?
#
# *Status.* These runs were made before the course was restructured (an earlier trainer version, the
# cost clamp and recipe of that time); they are kept as the record of why the package now trains its
# classifiers with SGD (chapter 3) and teaches the paper's CARMA first (chapter 7) with our changes
# apart (chapter 9). The tables below are the committed outputs of those runs; re-running them needs
# the removed `carma_table(clf_optimizer=..., algorithm=...)` options.

# %%
import pandas as pd
from pathlib import Path
d = Path('../figures/studies')
for name in ('table1_by_classifier', 'table1_paper_algorithm'):
    print(name); display(pd.read_csv(d / f'{name}.csv', index_col=0).round(2))

# %% [markdown]
# ### Table 1 with the original code's classifiers
#
# Chapter 3 found that the original code trained its classifiers with plain SGD, and chapter 6 that
# the oracle moves toward the paper's numbers when it serves the people those classifiers reject. Here
# CARMA goes through the same change: for every SCM, the SGD classifier, its rejected test people, and
# CARMA trained against it with the same settings and seeds as Table 1 (`carma_table(...,
# clf_optimizer='sgd')`). The Adam columns are Table 1's above.

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
# as we can get (the damping keeps our corrected sign). The same algorithm against the Adam classifiers is
# shown too.

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
# come from the better-trained (Adam) classifiers, and from the additions CARMA needed to cope with them.

# %% [markdown]
# **Answer.** The classifier explains most of the distance: with the original code's SGD classifiers,
# the paper's own algorithm lands within one of the paper's seed standard deviations on five of seven
# SCMs (collider-lin and collider-nlin costlier), so the package now follows the code (SGD) and keeps
# the paper's algorithm as its default.

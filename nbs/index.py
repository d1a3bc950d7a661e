# %% [markdown]
# # carma_nb
#
# > Amortized causal algorithmic recourse — CARMA (Majumdar & Valera, ACM FAccT 2024) — as a literate
# > course and a library.

# %% [markdown]
# When an automated system rejects someone — a loan, a job application — **algorithmic recourse** tells
# them what to change to be accepted. **Causal** recourse respects that acting on one feature changes
# others (more income also means more savings), but it needs the true causal model and a separate
# combinatorial search per person. **CARMA** removes both limits: a causal normalizing flow learned from
# data and the causal graph replaces the true model, and two networks — a *mask network* choosing which
# features to act on, an *action network* choosing by how much — are trained once and then answer
# every person in one forward pass.
#
# The chapters in `nbs/` build the method step by step; their exported cells are the `carma_nb`
# package, and running them is the test suite and regenerates the paper's tables and figures.

# %% [markdown]
# ## Install
#
# Linux, Python 3.11, from a clone of this repository:
#
# ```sh
# bash run_course.sh      # set up .venv (CPU torch 2.13.0, the pinned nbdev chain) and run every chapter
# bash .ci/run            # the tests: sync check, every chapter under nbdev_test, pytest
# ```
#
# Or just the library, into an environment of your own: `pip install torch==2.13.0 && pip install -e .`
# (the exact torch pin is the CPU build; a looser one pulls a multi-GB CUDA build).

# %% [markdown]
# ## Quick start
#
# Train CARMA on the paper's loan world at the quick profile (a minute on a laptop) and ask it what
# three rejected applicants should do:

# %%
import pandas as pd
from carma_nb.data import make_pools
from carma_nb.classifier import train_classifier
from carma_nb.flow import fit_flow
from carma_nb.training import train_carma
from carma_nb.recourse import rejected

pools = make_pools('loan')
clf = train_classifier('loan', pools.classifier, 'quick', verbose=False)
flow = fit_flow('loan', pools.causal, 'quick', verbose=False)            # the causal model, learned from data
carma = train_carma('loan', clf, flow, pools.recourse, profile='quick', verbose=False)
people = rejected(clf, pools.recourse.test.x)[:3]
rec = carma.recommend(people)                                            # one forward pass for everybody
print(pd.DataFrame({
    'targets': [', '.join(f'{n} → {v:.2f}' for n, v, m in zip(carma.names, vals, row) if m)
                for row, vals in zip(rec.mask, rec.values.tolist())],
    'p before': clf.predict_proba(people).numpy().round(2),
    'p after': rec.prob.numpy().round(2)}).to_string())

# %% [markdown]
# ## Results
#
# The paper's Table 1 as reproduced by `carma-nb reproduce --profile paper` (10 seeds; the test people
# the classifier rejects; cost = l2 × 100; validity = the recommended values replayed in the true SCM).
# `paper` columns are published values. *CARMA* is the paper's algorithm (chapters 7–8); *improved* our
# recipe (9); *optimal* each person's cheapest valid action (6b). Chapter 15 has the whole table.

# %%
#| output: asis
from carma_nb.core import markdown_table, project_root
_t1 = project_root()/'figures'/'table1.csv'
_cols = ['oracle cost, original convention', 'paper oracle cost', 'CARMA cost', 'CARMA cost std',
         'paper CARMA cost', 'paper CARMA cost std', 'CARMA validity %', 'paper CARMA validity %',
         'improved CARMA cost', 'improved CARMA validity %', 'optimal cost', 'improved CARMA / optimal',
         'DiCE-VAE cost', 'paper DiCE-VAE cost']
_df = pd.read_csv(_t1, index_col='scm') if _t1.exists() else None
if _df is not None and set(_cols) <= set(_df.columns):
    print(markdown_table(_df[_cols].round(2), floatfmt='.4g'))
else: print('*Not yet reproduced with this version: run `carma-nb reproduce --profile paper` '
            'to write `figures/table1.csv`.*')

# %% [markdown]
# ## The course
#
# | chapter | module | what it teaches |
# |---|---|---|
# | 00 toolbox | `carma_nb.core` | profiles, seeds, figures, checkpoints, the model cache (read when needed) |
# | 01 scm | `carma_nb.scm` | structural causal models, abduction–action–prediction, the seven SCMs |
# | 02 data | `carma_nb.data` | three independent data pools per SCM, and scaling |
# | 03 classifier | `carma_nb.classifier` | the frozen classifier whose rejections recourse overturns |
# | 04 causal flow | `carma_nb.flow` | a causal normalizing flow *is* an SCM: counterfactuals from data |
# | 05 recourse | `carma_nb.recourse` | actions, one cost, coverage vs causal validity, one answer type |
# | 06 oracle | `carma_nb.oracle` | the combinatorial causal oracle: loop, batched, early exit |
# | 06b optimum | `carma_nb.optimum` | the cheapest valid action in continuous values, the yardstick |
# | 07 carma | `carma_nb.carma` | the paper's CARMA model: two networks, one-pass serving, saving |
# | 08 training | `carma_nb.training` | the paper's loss and training; vs the oracle (Figs. 2, 7) |
# | 09 beyond the paper | `carma_nb.improved` | our additions as one recipe, and their ablation |
# | 10 preferences | `carma_nb.preferences` | preference weights: cost and mask prior (Table 7, Figs. 4–5) |
# | 11 vaca | `carma_nb.vaca` | a graph VAE as a second causal model (Fig. 3) |
# | 12 dice vae | `carma_nb.dice_vae` | the non-causal amortized baseline (Figs. 9–10) |
# | 13 serving | `carma_nb.serving` | a file of applicants in, recommendations out, refusals explained |
# | 14 experiments | `carma_nb.experiments` | the runner and the command line: reproduce, recommend, tune |
# | 15 paper | `carma_nb.paper` | Table 1, Table 7 and the figures next to the paper's; every difference |
# | 16 your own data | `carma_nb.world` | a table and a causal graph, no equations: a world from data |
# | 17 german credit | `carma_nb.german` | a real table: recommendations, and validity without a true SCM |
# | 18 fit and serve | `carma_nb.fitting` | a table and its graph to one model file; your own classifier |
#
# Investigations of our own choices (classifier optimiser, data draws, sweeps) live in `studies/`,
# outside the course; `figures/README.md` lists every figure and table with the chapter that writes it.

# %% [markdown]
# ## Serving applicants
#
# ```sh
# carma-nb recommend --scm loan --model carma_loan.pt --input applicants.csv --output actions.csv [--strict]
# carma-nb fit --data table.csv --graph graph.yaml --out model.pt      # your own table and causal graph
# carma-nb recommend --model model.pt --input applicants.csv --output actions.csv
# ```
#
# Every output row gets a `status` — `served`, `already accepted`, `no valid action`, or `refused: …`
# when the applicant (or the recommended counterfactual) lies outside the model's domain (chapter 5).
# Only `served` rows carry targets; `--strict` makes any refused row an error. Files are CSV or Parquet
# (`*.parquet`), served chunk by chunk (chapter 13); your own table, graph and classifier: chapters 16–18.
#
# ## Where next
#
# Read the chapters in order in Jupyter (`.venv/bin/jupyter lab nbs/`) or as a website (`bash .ci/site`
# builds it into `_site/`: open `_site/index.html`), or reproduce the paper with `carma-nb reproduce`.
#
# The website is Sphinx 9.0 with MyST-NB 1.4 and sphinx-book-theme 1.4 (the `site` extra: Jupyter Book 1's
# engine without its wrapper, which holds Sphinx at 7). It shows the committed notebooks as they are,
# never re-executed, `#| hide` cells dropped; each module's API page is autodoc with the parameter
# comments; MathJax ships inside, so it reads offline. `tests/test_site.py` opens every page in Chromium.

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
#| default_exp fitting

# %% [markdown]
# # From a table to a served model
#
# > One call, or one command, from a table and its causal graph to a model file whose recommendations
# > are values each feature can take; and how to bring the classifier you already have.
#
# Chapters 16 and 17 walked the path from a table to recommendations one step at a time: the world, the
# classifier, the causal flow, CARMA, a second flow to check it. Whoever has a table of their own wants
# that path as one step, and a file they can hand to the service of chapter 13:
#
# ```sh
# carma-nb fit --data applicants.csv --graph graph.yaml --out model.pt [--profile quick|paper] [--seed N]
# carma-nb recommend --model model.pt --input new_applicants.csv --output actions.csv
# ```
#
# The second command has no `--scm`: the model file carries its world's graph, so it knows its features,
# their types, bounds and directions, and recommends only values each feature can take (chapter 16: "valid
# values", not to be confused with a *valid recommendation*, one the classifier accepts). This chapter
# builds both steps, in Python first, and then the contract for a classifier of one's own.

# %%
#| export
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from carma_nb.carma import CARMA, load_carma, save_carma
from carma_nb.classifier import Classifier, accuracy, train_classifier
from carma_nb.core import as_features, load_checkpoint
from carma_nb.flow import fit_flow
from carma_nb.recourse import Recommendation
from carma_nb.serving import FileReport, check_output_path, recommend_file
from carma_nb.training import train_carma
from carma_nb.world import (Graph, World, parse_graph, recommend_in_world, register_world,
                            second_flow, table_fit, world_from_table, world_validity)

# %%
#| hide
from fastcore.test import test_close, test_eq, test_fail
import tempfile
import contextlib
import io
from carma_nb.core import get_profile, project_root
from carma_nb.experiments import main
from carma_nb.german import german_credit
from carma_nb.serving import serve
from carma_nb.world import load_graph, project
import pandas as pd


# %% [markdown]
# ## A model that serves valid values
#
# Chapter 16's `recommend_in_world` turns CARMA's continuous answers into valid values of each feature.
# A world's model must do the same however it is served — by `recommend`, by chapter 13's `serve` and
# `recommend_file`, by `carma-nb recommend` — so it is a CARMA whose `recommend` *is* that function:
# `WorldCARMA`, the trained model with its world's graph. Its domain (chapter 5) knows the world's types
# too: an applicant whose savings level is 2.5, or whose age is not a whole number, is refused with that
# reason, as one outside the training range is.

# %%
#| export
class WorldCARMA(CARMA):
    "CARMA for a world from data: `recommend` serves valid values of each feature (`recommend_in_world`)."
    graph: Graph

    def recommend(self, x) -> Recommendation:
        "Recommendations whose targets and counterfactuals are valid values, with their probability."
        return recommend_in_world(self, self.graph, x)[0]

def world_carma(model: CARMA, # a trained CARMA of the world
                graph: Graph, # the world's graph
               ) -> WorldCARMA:
    "The same model (the same tensors, causal model and classifier) as a `WorldCARMA` of `graph`."
    if not isinstance(model, CARMA) or model.names != graph.names:
        raise ValueError(f"the model must be a CARMA of the graph's features {list(graph.names)}")
    m = WorldCARMA(model.causal_model, model.clf, model.hp, tuple(model.z_range.tolist()))
    m.load_state_dict(model.state_dict())
    if m.actionable.tolist() != [float(f.role == 'actionable') for f in graph.features]:
        raise ValueError("the model acts on other features than the graph's actionable ones: not its graph")
    m.idle_tol, m.graph = model.idle_tol, graph
    m.history, m.config = getattr(model, 'history', {}), getattr(model, 'config', None)
    return m.freeze()


# %% [markdown]
# ## One call: `fit_world`
#
# `fit_world` takes a world (chapter 16's `world_from_table`) and trains everything on it with the
# functions of chapters 3, 4 and 8 — the classifier (with chapter 16's `table_fit`: plain SGD, or Adam for
# a small table), the causal flow, and CARMA with the paper's recipe — all seeded by the world's seed. It
# then grades what it trained on the world's held-out test rows. The report: the classifier's test
# accuracy, next to that of always answering the majority label (the baseline a classifier must beat); the
# flow's mean log-likelihood of a test row (dequantised as the training rows are; in nats, summed over the
# features, so comparable only between fits of the same table); and, for the test rows the classifier
# rejects (`rejected`), chapter 16's grades of the served recommendations: `coverage` (the share the
# classifier accepts after the action, under CARMA's flow: these are the rows `recommend` calls `served`,
# the others `no valid action`), `cross-flow validity` (the same under a second flow), `acts` (features
# changed per person) and `lost to valid values` (the share whose recommendation rounding to valid values
# broke). Each trainer shows its progress bar (silenced by `CARMA_QUIET=1`) and caches its model (chapter
# 0), so a second fit of the same table and settings takes seconds. The profile is the active one (chapter
# 0: `$CARMA_PROFILE`, else paper); the command below defaults to quick, a first look in minutes.

# %%
#| export
@dataclass
class Fitted:
    "What `fit_world` returns: the served model, its world, and how well it did on held-out rows."
    model: WorldCARMA
    world: World
    report: dict

def _report(model: CARMA, world: World, flow, profile) -> dict:
    "Held-out grades of a world's classifier, flow and CARMA (chapter 16's `world_validity`)."
    with torch.no_grad(): ll = float(flow.log_prob(world.pools.causal.test.x).mean())
    if not (model.clf.predict_proba(world.pools.recourse.test.x) < 0.5).any():
        raise ValueError(f"the classifier rejects none of the world's {len(world.pools.recourse.test)} test "
                         "rows, so CARMA cannot be graded: the table needs more people with label 0")
    grades = world_validity(model, world, second_flow(world, profile, world.pools.seed + 1))
    y = world.pools.classifier.test.y.float()
    return {'test rows': len(world.pools.recourse.test),
            'classifier test accuracy': accuracy(model.clf, world.pools.classifier.test),
            'majority-label accuracy': max(float(y.mean()), 1 - float(y.mean())),   # the baseline to beat
            'flow test log-likelihood': ll, **grades}

def fit_world(world: World, # a world from data (`world_from_table`)
              profile=None, # quick or paper (default: the active one, chapter 0)
              # your own classifier (`OwnClassifier`) instead of one trained here
              classifier: nn.Module | None = None,
             ) -> Fitted:
    "Train the classifier (or take yours), the causal flow and CARMA on a world; grade them on its test rows."
    if not isinstance(world, World):
        raise TypeError("fit_world needs a World: build it with world_from_table(table, graph, name)")
    t0, name, seed = time.perf_counter(), world.scm.name, world.pools.seed
    if classifier is not None and (getattr(classifier, 'scm', None) != name
                                   or tuple(getattr(classifier, 'feature_names', ())) != world.graph.names):
        raise ValueError("classifier must be an OwnClassifier of this world: OwnClassifier(module, world)")
    clf = classifier or train_classifier(name, world.pools, profile, seed, table_fit(world, profile))
    flow = fit_flow(name, world.pools.causal, profile, seed=seed)
    model = world_carma(train_carma(name, clf, flow, world.pools.recourse, seed=seed, profile=profile,
                                    cache=classifier is None), world.graph)     # (yours: never cached)
    report = _report(model, world, flow, profile)
    return Fitted(model, world, {**report, 'seconds': time.perf_counter() - t0})


# %% [markdown]
# German credit (chapter 17), seed 0: one call trains and grades it (the committed outputs ran at the
# paper profile, `CARMA_PROFILE=paper`; chapter 17 gives the spread over five seeds). Every served target
# is a valid value of its feature. The seconds are this run's: models found in the cache take none.

# %%
german_graph = load_graph(project_root()/'data'/'german_credit.yaml')
german = german_credit()
fitted = fit_world(world_from_table(german, german_graph, 'german', seed=0))     # the profile of this run
test = fitted.world.pools.recourse.test.x
rec = fitted.model.recommend(test)
test_eq(project(german_graph, rec.values), rec.values); test_eq(project(german_graph, rec.x_cf), rec.x_cf)
assert fitted.report['coverage'] > 0.5 and fitted.report['classifier test accuracy'] > 0.65, fitted.report
pd.Series(fitted.report).round(3)


# %% [markdown]
# In the committed outputs the classifier is no more accurate than always answering the majority label
# (66.5 % against 67.5 % on these 200 test rows): seven features of 700 applicants say little about a
# credit risk. CARMA explains the classifier it is given, good or bad; a bank's own model (below) is
# another one to explain.
#
# ## One file
#
# `save_world_model` writes chapter 7's checkpoint — the two networks, the flow, the classifier, the
# training range — with two more entries in its configuration: the world's name and graph (as the
# graph file would state it), and the report. `load_world_model` reads the graph back, checks it as a
# graph file is checked, registers the world's SCM (chapter 16's `register_world`) and loads the model
# as a `WorldCARMA`. Nothing else is needed: not the table, not the graph file.

# %%
#| export
def graph_spec(graph: Graph) -> dict:
    "The graph-file content of a `Graph` (`parse_graph` reads it back)."
    keep = lambda f: {k: list(v) if isinstance(v, tuple) else v for k, v in vars(f).items()
                      if v is not None or k == 'parents'}
    return {'label': graph.label, 'features': [keep(f) for f in graph.features]}

def save_world_model(fitted: Fitted, path: str | Path) -> Path:
    "Write a fitted world's model, graph and report in one checkpoint (atomically)."
    if not isinstance(fitted, Fitted): raise TypeError("save_world_model needs what fit_world returns")
    world = {'name': fitted.world.scm.name, 'graph': graph_spec(fitted.world.graph)}
    extra = {'kind': WORLD_MODEL, 'world': world, 'report': fitted.report}
    return save_carma(fitted.model, path, extra=extra)

WORLD_MODEL = 'carma-world-model'   # the kind of a world's model file (chapter 7's `load_carma` refuses it)

def is_world_model(path: str | Path) -> bool:
    "Whether `path` holds a world's model (`save_world_model`)."
    return load_checkpoint(path).config.get('kind') == WORLD_MODEL

def load_world_model(path: str | Path) -> WorldCARMA:
    "A world's model saved by `save_world_model`: its world registered, its recommendations valid values."
    cfg = load_checkpoint(path).config
    if cfg.get('kind') != WORLD_MODEL:
        raise ValueError(f"{path} is not a model of a world from data (carma-nb fit)" + (
            f": it is a model of the SCM {cfg.get('scm')!r}, served with --scm" if 'scm' in cfg else ''))
    world = cfg['world'] if isinstance(cfg.get('world'), dict) else {}
    graph = parse_graph(world.get('graph'), f'{path} (its graph)')
    name = register_world(graph, world.get('name')).name
    model = world_carma(load_carma(path, name, WORLD_MODEL), graph)   # (chapter 7's: every tensor checked)
    model.report = cfg.get('report') or {}
    return model

def recommend_world_file(model_path: str | Path, input_path: str | Path, output_path: str | Path,
                         idle_tol: float | None = None, strict: bool = False) -> FileReport:
    "Chapter 13's `recommend_file` for a world's model file (what `carma-nb recommend` runs without --scm)."
    check_output_path(output_path, input_path, model_path)             # never over the model file
    return recommend_file(load_world_model(model_path), input_path, output_path, None, idle_tol, strict)


# %% [markdown]
# Saved and loaded again, the model answers as before. A plain chapter-7 file of the same model is not a
# world's (`load_world_model` refuses it), a world's file is not a plain one (`load_carma` refuses it),
# and two applicants with values their features cannot take are refused, not served.

# %%
with tempfile.TemporaryDirectory() as d:
    path = save_world_model(fitted, Path(d)/'german.pt')
    again = load_world_model(path)
    test_eq(parse_graph(graph_spec(german_graph)).digest(), german_graph.digest())     # the same graph
    test_eq(again.recommend(test).values, rec.values)
    test_eq(again.report['coverage'], fitted.report['coverage'])
    test_eq(is_world_model(path), True)
    save_carma(load_carma(path, 'german', WORLD_MODEL), Path(d)/'plain.pt')
    test_eq(is_world_model(Path(d)/'plain.pt'), False)
    test_fail(lambda: load_world_model(Path(d)/'plain.pt'), contains='not a model of a world from data')
    test_fail(lambda: load_carma(path), contains="kind='carma-world-model' but kind='carma-model'")
    # in the graph's order: sex, age, amount, checking, duration, savings, housing
    off = torch.tensor([[1., 30.5, 2000., 1., 12., 2., 1.], [1., 30., 2000., 1., 12., 2.5, 1.]])
    status = serve(again, off).status
    assert status[0].startswith('refused: age 30.5 outside whole numbers in ['), status[0]
    test_eq(status[1], 'refused: savings 2.5 outside {0, 1, 2, 3, 4} (an ordinal feature: one of its levels)')


# %% [markdown]
# ## The command line
#
# `carma-nb fit` is `world_from_table`, `fit_world` and `save_world_model` behind a command (chapter 14
# adds it to `carma-nb`). The data is a CSV or Parquet file with a column per feature of the graph and the
# label (other columns are ignored; at least 50 rows, both labels, and some test rows the classifier
# rejects). It checks the output path before any training — an hour is too long to wait for "folder not
# writable" — prints the report in three lines, and writes the model file atomically. The world is named
# after the data file unless `--name` says otherwise (a file named after one of the paper's SCMs,
# `loan.csv`, needs one), and the name is stored in the model file.

# %%
#| export
def fit_arguments(p: argparse.ArgumentParser) -> None:
    "The arguments of `carma-nb fit`."
    p.add_argument('--data', required=True, help='CSV or Parquet file: a column per feature, and the label')
    p.add_argument('--graph', required=True, help='the causal graph (YAML; chapter 16 shows the format)')
    p.add_argument('--out', required=True, help='the model file to write (for carma-nb recommend --model)')
    p.add_argument('--profile', choices=['quick', 'paper'], default='quick',
                   help='quick: a first look in minutes; paper: the paper settings (default: quick)')
    p.add_argument('--seed', type=int, default=0, help='the split of the table and every model (default: 0)')
    p.add_argument('--name', default=None, help="the world's name (default: the data file's name)")

def report_lines(report: dict) -> list[str]:
    "A fit's report as three lines of text."
    pct = lambda k: f"{100 * report[k]:.1f} %"
    return [f"classifier: test accuracy {pct('classifier test accuracy')} (the majority label alone: "
            f"{pct('majority-label accuracy')}); causal flow: test log-likelihood "
            f"{report['flow test log-likelihood']:.2f} per person",
            f"CARMA, on {report['rejected']} rejected of {report['test rows']} test rows: coverage "
            f"{pct('coverage')}, cross-flow validity {pct('cross-flow validity')}, "
            f"{report['acts']:.2f} acts each; {pct('lost to valid values')} lost to valid values",
            f"trained and graded in {report['seconds']:.0f} s"]

def fit_command(a: argparse.Namespace) -> None:
    "`carma-nb fit`: train on the table, print the report, write the model file."
    out = check_output_path(a.out, a.data, a.graph)
    name = a.name or Path(a.data).stem
    world = world_from_table(a.data, a.graph, name, seed=a.seed)
    fitted = fit_world(world, a.profile)
    save_world_model(fitted, out)
    print('\n'.join(report_lines(fitted.report)) + f" → {out} (world {name!r})")


# %% [markdown]
# Both commands on German credit, in this process, as a user would type them (at this run's profile, so
# the fit above is found in the model cache; an output path that is a folder is refused before any
# training, with exit code 2). The applicants are the test rows, which the fit never saw. The file to
# serve has exactly the graph's features as columns, in any order (a label or an ID column is refused as
# unknown). The output repeats them in the graph's order, then each row's `status` (`served`, `already
# accepted`, `no valid action`, or `refused: …` for a row or a counterfactual outside the domain: the
# training range widened by 10 %, within the graph's bounds and types; `--strict` makes a refusal an
# error), `accepted` and `prob_before`, and per actionable feature `act_<feature>` and `<feature>_target`
# — targets only on served rows — and `prob_after` (chapter 13). In the committed run, one of the 200 test
# applicants lies outside the domain and is refused:

# %%
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    german.to_csv(d/'german.csv', index=False)
    held_out = pd.DataFrame(fitted.world.pools.recourse.test.x.numpy(), columns=german_graph.names)
    held_out.to_csv(d/'applicants.csv', index=False)           # applicants the fit never saw: the test rows
    graph = str(project_root()/'data'/'german_credit.yaml')
    test_eq(main(['fit', '--data', str(d/'german.csv'), '--graph', graph, '--out', str(d/'model.pt'),
                  '--profile', get_profile().name]), 0)
    test_eq(main(['recommend', '--model', str(d/'model.pt'), '--input', str(d/'applicants.csv'),
                  '--output', str(d/'actions.csv')]), 0)
    actions = pd.read_csv(d/'actions.csv')
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        test_eq(main(['fit', '--data', str(d/'german.csv'), '--graph', graph, '--out', str(d)]), 2)
assert 'is a folder' in err.getvalue(), err.getvalue()
served = actions[actions.status == 'served']
assert len(served) > 0 and (served.savings_target.dropna() % 1 == 0).all()
served[['amount', 'amount_target', 'duration', 'duration_target', 'savings', 'savings_target',
        'prob_before', 'prob_after']].head(3)


# %% [markdown]
# ## Your own classifier
#
# A bank already has the model that makes its decisions, and recourse is only worth giving against
# *that* model. `OwnClassifier` puts any PyTorch module in the place of chapter 3's classifier. The
# contract:
#
# - the module takes a float32 tensor (n, D) of **raw** features (not standardised) and returns the
#   probability of the favourable outcome, shape (n,) or (n, 1) — or its logit, with `output='logit'`;
# - its columns are the world's features in the order `columns` lists (default: the world's order,
#   `world.graph.names`, which is the graph's topological order, not necessarily the table's);
# - it is differentiable in its input: CARMA trains through it, so no `.detach()`, NumPy or thresholds
#   inside;
# - it is deterministic once in evaluation mode (no sampling in its forward pass);
# - it answers for any values between a feature's levels, not only the levels: CARMA trains on the flow's
#   continuous counterfactuals (a savings level of 2.7), so a lookup or one-hot encoding of ordinal codes
#   breaks it;
# - it has not been trained on the world's test rows, or the report's grades are flattered.
#
# The wrapper freezes your module in place — evaluation mode, no gradients for its weights — and then
# checks it on (up to 256 of) the world's training rows: one finite answer per row of the declared kind, a
# gradient that reaches the features, the same answer twice. Each error says what to change. The order of
# the columns and whether the module wants raw features it cannot check: a module that reads its columns
# in another order still returns probabilities, only worse ones. So compare the classifier's test accuracy
# in `fit_world`'s report — your module's, on the world's held-out rows — with the majority label's next
# to it. A probability is turned into the logit CARMA's hinge needs as log p − log(1 − p) (clamped to 1e-7
# from 0 and 1, where a float32 probability carries no more); a module that can return its logit should,
# so that people far below the boundary still give CARMA a gradient. A model with your own classifier is
# your code, so it cannot go into a model file, which is loaded without running any code (`save_carma`
# refuses it): it lives in your Python process, where `recommend` and chapter 13's `recommend_file` (which
# also takes a model object) serve it. CARMA trained on it is never cached either — the model cache cannot
# know your module's code — so a new process trains it again.

# %%
#| export
class OwnClassifier(nn.Module):
    "Your own differentiable classifier (raw features in, probability or logit out), as CARMA uses one."
    def __init__(self,
                 module: nn.Module, # the classifier
                 world: World, # the world it decides in
                 columns: list[str] | None = None, # the module's feature order (default: world.graph.names)
                 output: str = 'probability', # what the module returns: 'probability' or 'logit'
                ):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, not {type(module).__name__}")
        if output not in ('probability', 'logit'): raise ValueError("output must be 'probability' or 'logit'")
        names = world.graph.names
        columns = list(names if columns is None else columns)
        if sorted(columns) != sorted(names):
            raise ValueError(f"columns must list the world's features {list(names)} once each, got {columns}")
        self.module, self.output, self.scm, self.feature_names = module, output, world.scm.name, names
        self.register_buffer('order', torch.tensor([names.index(c) for c in columns]))
        self.hidden = (type(module).__name__,)                      # how CARMA's repr names it
        digest = hashlib.sha256(b''.join(v.detach().cpu().numpy().tobytes()
                                         for v in module.state_dict().values()))
        self.config = {'kind': 'own-classifier', 'class': type(module).__qualname__, 'columns': columns,
                       'output': output, 'weights': digest.hexdigest()[:16]}   # (recorded with the model)
        self.freeze()
        check_classifier(self, world.pools.classifier.train.x[:256])

    @property
    def n_features(self) -> int: return len(self.feature_names)

    def logits(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        "Logit of the favourable outcome for raw features x (n, D) → (n,)."
        if check: x = as_features(x, self.n_features, 'x', self.feature_names)
        out = self.module(x.float()[:, self.order])
        out = out.squeeze(-1) if out.ndim == 2 and out.shape[1] == 1 else out
        return out if self.output == 'logit' else torch.logit(out, eps=1e-7)

    # the rest as chapter 3's classifier has them: σ(logit), p ≥ 0.5, frozen
    predict_proba, decide, freeze = Classifier.predict_proba, Classifier.decide, Classifier.freeze
    forward = predict_proba

def check_classifier(clf: OwnClassifier, x: torch.Tensor) -> None:
    "Check the contract on rows x: one finite answer per row, a probability in [0, 1], a gradient, no noise."
    x = x.float().clone().requires_grad_(True)
    try: out = clf.module(x[:, clf.order])
    except Exception as e:
        raise ValueError(f"your classifier failed on a float32 ({len(x)}, {x.shape[1]}) tensor of raw "
                         f"features ({type(e).__name__}: {e}); it must take one") from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"your classifier must return a torch tensor, got {type(out).__name__}")
    if out.shape not in ((len(x),), (len(x), 1)):
        raise ValueError(f"your classifier must return a value per row, shape ({len(x)},) or ({len(x)}, 1), "
                         f"got {tuple(out.shape)}: for two classes, return the favourable one's column")
    inside = bool(((out >= 0) & (out <= 1)).all())
    if not torch.isfinite(out).all() or (clf.output == 'probability') > inside:
        raise ValueError(f"your classifier returned values that are not {clf.output}s: " + (
            "does it end in a sigmoid? If it returns a logit, pass output='logit'"
            if clf.output == 'probability' else "a logit is any finite number"))
    if clf.output == 'logit' and inside:
        raise ValueError("your classifier's every answer lies in [0, 1], as probabilities do: if they are, "
                         "pass output='probability'")
    g = torch.autograd.grad(out.sum(), x, allow_unused=True)[0] if out.requires_grad else None
    if g is None or not torch.isfinite(g).all() or not g.any():
        raise ValueError("your classifier is not differentiable in its input (no gradient reached the "
                         "features): CARMA trains through it; remove .detach(), NumPy or thresholds from it")
    with torch.no_grad():
        if not torch.equal(clf.module(x[:, clf.order]), clf.module(x[:, clf.order])):
            raise ValueError("your classifier answers the same rows differently (dropout? sampling?): "
                             "it must be deterministic in eval mode")


# %% [markdown]
# A bank's model for German credit: a small network of its own (standardising inside, as a deployed
# model would), trained by the bank — here on the training rows of the world `fit_world` will use, seed
# 0, so that the test rows stay unseen — and handed over as it is. Its feature order is the table's, so
# it says so with `columns`. The world gets a name of its own, `german-own`, so that its models (trained
# against the bank's classifier) never mix with those of the world above. The wrapper's probabilities are
# the module's, for the columns reordered as it expects (checked on five test rows).

# %%
world = world_from_table(german, german_graph, 'german-own', seed=0)
cols = [c for c in german.columns if c != 'approved']                 # the table's order
train = world.pools.classifier.train
xs, ys = train.x[:, [world.graph.names.index(c) for c in cols]], train.y.float()
class BankModel(nn.Module):
    def __init__(self, x):
        super().__init__()
        self.register_buffer('mean', x.mean(0)); self.register_buffer('std', x.std(0))
        self.net = nn.Sequential(nn.Linear(x.shape[1], 16), nn.ReLU(), nn.Linear(16, 1))
    def forward(self, x): return torch.sigmoid(self.net((x - self.mean) / self.std))
torch.manual_seed(0)
bank = BankModel(xs)
opt = torch.optim.Adam(bank.parameters(), lr=1e-2)
for _ in range(300):
    opt.zero_grad(); nn.functional.binary_cross_entropy(bank(xs)[:, 0], ys).backward(); opt.step()
own = fit_world(world, classifier=OwnClassifier(bank, world, columns=cols))
test_close(own.model.clf.predict_proba(world.pools.recourse.test.x[:5]),
           bank(world.pools.recourse.test.x[:5][:, own.model.clf.order])[:, 0].detach(), eps=1e-6)
test_fail(lambda: save_world_model(own, 'never.pt'), contains='your own is your code')
assert own.report['coverage'] > 0.5, own.report
pd.Series(own.report).round(3)


# %% [markdown]
# Modules that break the contract, each refused with what to change:

# %%
class Detached(BankModel):
    def forward(self, x): return super().forward(x).detach()
class Logit(BankModel):
    def forward(self, x): return self.net((x - self.mean) / self.std)
class Noisy(BankModel):
    def forward(self, x): return super().forward(x + 0.01 * torch.randn_like(x))
for module, message in [(Detached(xs), 'not differentiable'), (Logit(xs), "pass output='logit'"),
                        (Noisy(xs), 'must be deterministic'), (nn.Linear(7, 2), 'a value per row')]:
    test_fail(lambda: OwnClassifier(module, world, columns=cols), contains=message)
test_fail(lambda: OwnClassifier(bank, world, columns=cols[:-1]), contains="once each")
test_fail(lambda: OwnClassifier(bank, world, columns=cols, output='logit'), contains='as probabilities do')
test_eq(OwnClassifier(Logit(xs), world, columns=cols, output='logit').output, 'logit')   # accepted as one

# %%
#| hide
import nbdev; nbdev.nbdev_export()

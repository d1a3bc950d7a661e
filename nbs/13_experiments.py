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
#| default_exp experiments

# %% [markdown]
# # Experiments: the paper in one command
#
# > A runner that plans every experiment, reuses cached models, runs independent jobs in parallel and
# > writes one tidy table; and the `carma-nb` command line around it.
#
# The earlier chapters each answer one question on their own. Reproducing the paper means answering all
# of them — seven SCMs, ten seeds, four methods, the preference study, VACA and the training-data
# ablation — and collecting every number in one place. That is bookkeeping, and bookkeeping is what
# this chapter automates:

# %% [markdown]
# - **plan**: a list of `Job`s, one per (SCM, method[, training fraction]); a CARMA or DiCE-VAE job
#   trains all the profile's seeds at once (chapter 8's stacked training) and yields one row per seed;
# - **run**: each job writes its rows to its own JSON file, atomically; a job whose file exists is not
#   run again, so an interrupted run resumes where it stopped, and independent jobs run in parallel
#   worker processes (the model cache's file locks make two jobs needing the same classifier or flow
#   train it once);
# - **collect**: all rows in one tidy CSV — one row per SCM, method and seed, with every metric of the
#   shared evaluation and the timings.

# %%
#| export
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import io
import json
import math
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context, parent_process
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from carma_nb.carma import CARMA, carma_hparams, load_carma
from carma_nb.training import PAPER_CARMA, get_recipe, train_carma_seeds
from carma_nb.core import (TRAINER_VERSION, Profile, atomic_write, check_positive, check_whole, config_key,
                           figure_dir, get_profile, markdown_table, progress, project_root, save_table)
from carma_nb.data import Pool, Split
from carma_nb.dice_vae import PAPER_DICE_COST, dice_hparams, train_dice_vae_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import PAPER_ORACLE, cached_oracle, oracle_reference, original_convention_metrics
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS
from carma_nb.recourse import (Recommendation, as_weights, evaluate_recourse, recourse_problem, rejected,
                               time_per_person)
from carma_nb.recourse import DOMAIN_MARGIN, SERVED, outside_domain, recourse_status
from carma_nb.scm import SCM_NAMES, get_scm
from carma_nb.vaca import fit_vaca

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close, test_ne
import dataclasses
import tempfile
import matplotlib.pyplot as plt

# %% [markdown]
# ## Planning
#
# The methods of Table 1 run on every SCM; the loan studies (weighted oracle and CARMA, CARMA with
# VACA, and the training-data fraction ablation of Fig. 8) run on loan. Jobs are ordered longest
# first, so that two workers finish at about the same time.

# %%
#| export
TABLE1_METHODS = ('oracle', 'carma', 'carma-improved', 'dice-vae')
LOAN_STUDIES = ('oracle-weighted', 'carma-weighted', 'carma-vaca', 'carma-fraction')
ABLATION_FRACTIONS = (0.05, 0.1, 0.25, 0.5, 0.75)   # 1.0 is the plain CARMA job
_WEIGHT = {'carma': 2, 'carma-improved': 4, 'carma-vaca': 4, 'carma-weighted': 3, 'carma-fraction': 1,
           'dice-vae': 2, 'oracle': 1, 'oracle-weighted': 1}

@dataclass(frozen=True)
class Job:
    "One unit of work: a method on an SCM (all the profile's seeds), at a training-data fraction."
    scm: str
    method: str
    fraction: float = 1.0
    @property
    def key(self) -> str:
        return f'{self.scm}__{self.method}' + (f'__{self.fraction:g}' if self.fraction != 1.0 else '')

def plan_jobs(scms=SCM_NAMES, # SCM names
              methods=TABLE1_METHODS, # Table 1 methods to run on every SCM
              studies=LOAN_STUDIES, # loan studies (run only when loan is among `scms`)
             ) -> list[Job]:
    "The jobs to run, longest first."
    scms = [get_scm(s).name for s in scms]
    bad = [m for m in (*methods, *studies) if m not in _WEIGHT]
    if bad: raise ValueError(f"unknown methods {bad}; known: {sorted(_WEIGHT)}")
    jobs = [Job(s, m) for s in scms for m in methods]
    if 'loan' in scms:
        for st in studies:
            jobs += ([Job('loan', st, f) for f in ABLATION_FRACTIONS] if st == 'carma-fraction'
                     else [Job('loan', st)])
    size = lambda j: (_WEIGHT[j.method] * (4 if j.scm == 'loan' else 1)
                      * (5 if j.scm == 'triangle-lin' and 'carma' in j.method else 1))
    return sorted(jobs, key=size, reverse=True)


# %%
jobs = plan_jobs()
test_eq(len(jobs), 7 * 4 + 3 + len(ABLATION_FRACTIONS))
test_eq(jobs[0].key, 'triangle-lin__carma-improved')             # the longest job first
test_eq(Job('loan', 'carma-fraction', 0.25).key, 'loan__carma-fraction__0.25')
test_eq(len(plan_jobs(['chain-lin'])), 4)
test_fail(lambda: plan_jobs(methods=['magic']), contains="unknown methods ['magic']")
[j.key for j in jobs[:6]]


# %% [markdown]
# ## Running one job
#
# Every method is evaluated by the shared evaluation of chapter 5 on the SCM's rejected test people
# (the oracle's people), and timed both ways (batch size 1 and the whole set in one batch). A training
# fraction keeps the first share of the recourse training split (the splits are already random).

# %%
#| export
def _fraction_pool(pool: Pool, fraction: float) -> Pool:
    "The recourse pool with only the first `fraction` of its training split."
    if not 0 < fraction <= 1: raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1: return pool
    k = max(1, round(len(pool.train) * fraction))
    t = pool.train
    return Pool(pool.name, Split(t.x[:k], t.u[:k], t.y[:k], t.seed), pool.val, pool.test)

def _score(ref, problem, model_recommend, extra: dict) -> dict:
    r = model_recommend(ref.people)
    met = evaluate_recourse(problem, ref.clf, ref.people, r).metrics
    t = time_per_person(model_recommend, ref.people, single=30)
    return {**extra, **met, 'ms per person (batch size 1)': t['ms per person, batch size 1'],
            'ms per person (batched)': t['ms per person, batched']}

def run_job(job: Job, profile=None) -> list[dict]:
    "Run one job and return its rows (one per seed; one row for the oracle)."
    p = get_profile(profile)
    ref = oracle_reference(job.scm, p)
    base = {'scm': job.scm, 'method': job.method, 'fraction': job.fraction, 'profile': p.name}
    seeds = list(range(p.seeds))
    if job.method in ('oracle', 'oracle-weighted'):
        w = PAPER_PREFERENCE_WEIGHTS if job.method == 'oracle-weighted' else None
        problem = recourse_problem(job.scm, ref.pools, w)
        r = ref.result if w is None else cached_oracle(problem, ref.clf, ref.people)
        met = evaluate_recourse(problem, ref.clf, ref.people, r).metrics
        orig = original_convention_metrics(ref) if w is None else {}   # the paper's oracle column's units
        return [{**base, 'seed': None, **met, **orig,
                 'ms per person (batched)': r.seconds / len(ref.people) * 1e3}]
    if job.method == 'dice-vae':
        models = train_dice_vae_seeds(job.scm, ref.clf, ref.pools.recourse, seeds, profile=p, verbose=False)
        return [_score(ref, ref.problem, m.recommend,
                       {**base, 'seed': s, 'train s per model': float(m.history['train_seconds'])})
                for s, m in zip(seeds, models)]
    w = PAPER_PREFERENCE_WEIGHTS if job.method == 'carma-weighted' else None
    cm = (fit_vaca(job.scm, ref.pools.causal, p, verbose=False) if job.method == 'carma-vaca'
          else fit_flow(job.scm, ref.pools.causal, p, verbose=False))
    # the loan studies are the paper's experiments
    recipe = 'improved' if job.method == 'carma-improved' else 'paper'
    models = train_carma_seeds(job.scm, ref.clf, cm, _fraction_pool(ref.pools.recourse, job.fraction), seeds,
                               recipe, profile=p, weights=w, verbose=False)
    problem = recourse_problem(job.scm, ref.pools, w)
    rows = []
    for s, m in zip(seeds, models):
        extra = {**base, 'seed': s,
                 'train s per model': float(m.history.get('train_seconds', torch.tensor(float('nan')))),
                 'stacked models': int(m.history.get('stacked_models', torch.tensor(0)))}
        rows.append(_score(ref, problem, m.recommend, extra))
    return rows


# %%
rows = run_job(Job('chain-lin', 'oracle'), 'quick')
test_eq(len(rows), 1); test_eq(rows[0]['method'], 'oracle')
assert rows[0]['cost x100 (original convention)'] > rows[0]['cost x100']     # chapter 6: narrower ranges
test_fail(lambda: _fraction_pool(oracle_reference('chain-lin', 'quick').pools.recourse, 0),
          contains='fraction must be in (0, 1]')
test_eq(len(_fraction_pool(oracle_reference('chain-lin', 'quick').pools.recourse, 0.1).train), 1000)
pd.DataFrame(rows).round(3)


# %% [markdown]
# ## Running the plan
#
# `run_experiments` writes each job's rows to `<out>/jobs/<profile>/<job>__<hash>.json` (atomically) and
# skips jobs whose file exists. The hash is of `job_config`: everything that decides the rows — the job,
# every field of the profile (the seed count among them), the trainers' version and the method's
# hyperparameters — so a run with other settings (`--seeds 3`, say) never picks up an older run's rows.
# Then it collects everything into `<out>/results_<profile>.csv`. With `jobs > 1` it runs jobs in that
# many worker processes, each limited to one thread (on a 2-core machine two single-threaded workers are
# much faster than one two-threaded process on these small models). The workers receive the `Profile`
# itself, not its name, so a profile changed on the command line reaches them.

# %% [markdown]
# ### A worker dies with its parent
#
# A pool's worker runs the jobs its parent hands it through a queue. When the parent ends normally, or on
# Ctrl-C, it shuts the pool down and the workers leave. But when the parent is killed outright (`kill -9`,
# the out-of-memory killer), nobody tells them: each worker finishes the job it holds — possibly an hour
# of paper-profile training, on a core the next run needs, holding the cache lock of the model it trains
# so that the next run waits for it — and then waits forever on a queue nobody feeds. So every worker
# starts a daemon thread that watches its parent. `multiprocessing` gives each child a *sentinel* of its
# parent, a pipe end that becomes readable the moment the parent ends, however it ends; the thread waits
# on it and ends the worker at once with `os._exit`. No clean-up runs then: a checkpoint it was saving
# leaves a temporary file, which the next run that takes that model's lock removes (chapter 0).

# %%
#| export
def exit_with_parent() -> threading.Thread:
    "In a multiprocessing worker: start a daemon thread that ends this process as soon as its parent ends."
    parent = parent_process()
    if parent is None:
        raise RuntimeError("exit_with_parent runs in a multiprocessing worker (e.g. a pool's initializer); "
                           "this process was not started by multiprocessing")
    def watch():
        parent.join()                    # waits on the parent's sentinel: returns once the parent has ended
        os._exit(1)                      # at once: the parent can no longer use anything this worker does
    t = threading.Thread(target=watch, name='exit-with-parent', daemon=True)
    t.start()
    return t


# %% [markdown]
# A parent process with a pool of one worker busy on a long job is killed with `SIGKILL`. Both shared the
# parent's standard output, so reading it to the end returns only once every process holding it — the
# worker included — has ended.

# %%
import signal, subprocess
# a process no pool started
outside = subprocess.run([sys.executable, '-c',
                          'from carma_nb.experiments import exit_with_parent; exit_with_parent()'],
                         capture_output=True, text=True)
assert outside.returncode != 0 and 'runs in a multiprocessing worker' in outside.stderr
with tempfile.TemporaryDirectory() as d:
    (Path(d)/'parent.py').write_text(
        "import os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from carma_nb.experiments import _worker_init\n"
        "if __name__ == '__main__':\n"
        "    ex = ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=_worker_init)\n"
        "    print(ex.submit(os.getpid).result(), flush=True)\n"
        "    ex.submit(time.sleep, 120)                # a long job\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(Path(d)/'parent.py')], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL); parent.wait()
    t0 = time.perf_counter()
    parent.stdout.read(); parent.stdout.close()
    print(f'worker {worker} ended {time.perf_counter() - t0:.2f} s after its parent was killed')
    assert time.perf_counter() - t0 < 10


# %%
#| export
def _worker_init():
    torch.set_num_threads(1)
    os.environ['CARMA_QUIET'] = '1'
    exit_with_parent()

def job_config(job: Job, profile=None) -> dict:
    ("Everything that decides a job's rows: the job, every field of the profile (its seeds among them), "
     "the trainers' version and hyperparameters.")
    p = get_profile(profile)
    variant = 'vaca' if job.method == 'carma-vaca' else 'weighted' if job.method == 'carma-weighted' else None
    carma = job.method.startswith('carma')
    hp = (carma_hparams(job.scm, variant) if carma else dice_hparams(job.scm) if job.method == 'dice-vae'
          else None)
    recipe = (get_recipe('improved' if job.method == 'carma-improved' else 'paper', job.scm, variant) if carma
              else None)
    return {'job': asdict(job), 'profile': asdict(p), 'seeds': list(range(p.seeds)),
            'trainer': TRAINER_VERSION,
            'hparams': {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()} if hp else None,
            'recipe': {**recipe.config(), 'idle_tol': recipe.idle_tol} if recipe else None}

def job_path(job_dir: str | Path, job: Job, profile=None) -> Path:
    ("The file that stores a job's rows: `<job key>__<hash of job_config>.json`, "
     "so a changed setting never reuses old rows.")
    return Path(job_dir)/f'{job.key}__{config_key(job_config(job, profile))[:12]}.json'

def _run_and_store(job: Job, profile: Profile, path: str) -> str:
    t0 = time.perf_counter()
    # the Profile itself, not its name: a worker must not reload the stock one
    rows = run_job(job, profile)
    for r in rows: r['job seconds'] = time.perf_counter() - t0
    with atomic_write(path, 'w') as f: json.dump({'config': job_config(job, profile), 'rows': rows}, f)
    return job.key

def results_path(out: str | Path, profile=None) -> Path:
    "The tidy results table of a run: `<out>/results_<profile>.csv`."
    return Path(out)/f'results_{get_profile(profile).name}.csv'

def run_experiments(profile=None, # quick or paper
                    scms=SCM_NAMES, methods=TABLE1_METHODS, studies=LOAN_STUDIES,
                    jobs: int = 1, # worker processes (1: run here, in order)
                    # where job files and the results CSV go (default: the figure folder)
                    out: str | Path | None = None,
                    verbose: bool = True) -> pd.DataFrame:
    "Run (or resume) every planned job and return the tidy results table (also written as CSV)."
    p = get_profile(profile)
    jobs = check_whole(jobs, 'jobs')
    out = Path(out) if out is not None else figure_dir(p)
    job_dir = out/'jobs'/p.name
    job_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_jobs(scms, methods, studies)
    paths = {j: job_path(job_dir, j, p) for j in plan}
    todo = [j for j in plan if not paths[j].exists()]
    if verbose: print(f'{len(plan)} jobs planned, {len(plan) - len(todo)} already done, {len(todo)} to run '
                      f'({p.name} profile, {jobs} worker(s))')
    bar = progress(total=len(todo), desc='experiments', disable=None if verbose else True)
    if jobs == 1:
        for j in todo: _run_and_store(j, p, str(paths[j])); bar.update()
    elif todo:
        with ProcessPoolExecutor(jobs, mp_context=get_context('spawn'), initializer=_worker_init) as ex:
            futs = {ex.submit(_run_and_store, j, p, str(paths[j])): j for j in todo}
            for f in as_completed(futs):
                f.result(); bar.update()
    bar.close()
    rows = [r for j in plan for r in json.loads(paths[j].read_text())['rows']]
    df = pd.DataFrame(rows)
    with atomic_write(results_path(out, p), 'w') as f: df.to_csv(f, index=False)
    return df


# %% [markdown]
# A small run at the quick profile: the oracle and CARMA on chain-lin. Running it again finds both jobs
# done and only reads their files.

# %%
with tempfile.TemporaryDirectory() as d:
    res = run_experiments('quick', ['chain-lin'], methods=('oracle', 'carma'), studies=(), out=d,
                          verbose=False)
    test_eq(sorted(res['method'].unique()), ['carma', 'oracle'])
    test_eq(len(res), 1 + get_profile('quick').seeds)
    t0 = time.perf_counter()
    again = run_experiments('quick', ['chain-lin'], methods=('oracle', 'carma'), studies=(), out=d,
                            verbose=False)
    assert time.perf_counter() - t0 < 5
    test_eq(again[['cost x100']].to_numpy(), res[['cost x100']].to_numpy())
    assert results_path(d, 'quick').exists()
    one_seed = dataclasses.replace(get_profile('quick'), seeds=1)          # what `--seeds 1` makes
    test_ne(job_path(d, Job('chain-lin', 'carma'), one_seed), job_path(d, Job('chain-lin', 'carma'), 'quick'))
    test_eq(len(run_experiments(one_seed, ['chain-lin'], methods=('carma',), studies=(), out=d,
                                verbose=False)), 1)
res[['scm', 'method', 'seed', 'cost x100', 'validity %', 'acts', 'ms per person (batch size 1)']].round(3)


# %% [markdown]
# ## Table 1
#
# From the tidy results to the paper's Table 1: per SCM, the oracle's cost, acts and time, DiCE-VAE's
# cost and CARMA's mean ± standard deviation over seeds, next to the paper's values.

# %%
#| export
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


# %%
table1(res).round(3)

# %% [markdown]
# ## The command line
#
# `carma-nb` (installed with the package) wraps the runner and the deployment path:
#
# - `carma-nb reproduce [--profile quick|paper] [--scm NAME ...] [--seeds N] [--jobs N] [--out DIR]` runs the
#   plan, writes the results table, Table 1, Table 7 and Fig. 8, and — from a source checkout — executes
#   the chapters so that every figure is regenerated into the same folder;
# - `carma-nb recommend --scm loan --model PATH --input people.csv --output actions.csv [--strict]` serves
#   a file of applicants with a saved CARMA model (`save_carma`, chapter 7), each row with a status;
# - `carma-nb tune --scm NAME --trials N [--storage URL] [--seed N]` runs the two-objective hyperparameter
#   search of the paper's Appendix B with Optuna; workers on several machines share one study through a database URL.
#
# `recommend` and `tune` also serve SCMs of one's own. A new process knows only the seven SCMs of the
# paper, and an SCM's equations are code, which no checkpoint carries (checkpoints hold tensors and
# JSON only, and are never unpickled). So the module that calls `register_scm` is named on the command
# line, `--import my_world` (a dotted module name) or `--import path/to/my_world.py`, and imported first.

# %% [markdown]
# ### `recommend`: the deployment path
#
# The input is a CSV with one column per feature, named as in the SCM (any order). The output has the
# applicant's columns, a `status`, whether they were already accepted, the recommended action
# (`act_<feature>`, `<feature>_target`) and the classifier's probability before and after. Everything is
# one batched forward pass of the model's own serving program (chapter 7), with its own setting for
# idle acts: a model trained with the improved recipe leaves out acts that change nothing (chapter 9),
# the paper's serves every act. `--idle-tol TOL` overrides the model's setting (`0` keeps every act).
#
# A file handed to a service is where things go silently wrong, so each step below refuses what it
# cannot answer, and says where and why.

# %% [markdown]
# **Reading.** The file is read as text first and parsed second: every feature column keeps the text
# it was written with, so the output repeats each value exactly as read (16777217 stays 16777217 and
# does not come back as float32's 1.6777216e+07). The file must be UTF-8 and comma-separated, with a
# header naming exactly the SCM's features and one value per column in every row. A row with more
# fields than the header would otherwise be shifted by one column and served as somebody else; it is
# refused, naming the row, like a file that is not UTF-8 (naming the byte and line), a file whose
# delimiter looks like `;` or a tab, a header without rows, and any value that is not a number
# (`True` included: write 1 or 0), missing, or infinite.

# %%
#| export
_NA_TEXT = {'', 'nan', 'na', 'n/a', 'null', 'none'}   # read as a missing value, not as a malformed one

def _csv_text(path: str | Path) -> str:
    "The file's text, decoded as UTF-8 (with or without a byte-order mark), or an error naming the problem."
    path, name = Path(path), repr(str(path))
    try: data = path.read_bytes()
    except FileNotFoundError: raise FileNotFoundError(f"input file {name} does not exist") from None
    except IsADirectoryError: raise ValueError(f"input {name} is a folder; give a CSV file") from None
    except OSError as e: raise ValueError(f"cannot read the input file {name}: {e.strerror or e}") from None
    try: return data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b'\n') + 1
        raise ValueError(f"input file {name} is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} "
                         f"({e.reason}); save it as UTF-8 (a spreadsheet's 'CSV UTF-8')") from None

def _row_lengths_error(path, text: str, width: int | None = None) -> ValueError | None:
    "The first data row whose number of fields differs from the header's, as an error (None if all agree)."
    reader, k = csv.reader(io.StringIO(text)), 0
    header = next(reader, [])
    width = width or len(header)
    for row in reader:
        if not row: continue                                       # blank lines are skipped, as when parsing
        k += 1
        if len(row) != width:
            n = len(row)
            hint = ('a comma inside a value, or a trailing comma?' if n > width else 'a value left out?')
            if n == 1 and ';' in row[0]: hint = 'the delimiter looks wrong: write commas'
            return ValueError(f"{path}: data row {k} (line {reader.line_num}) has {n} field{'s' * (n > 1)} "
                              f"but the header has {width} ({hint}); every row needs one value per column")
    return None

def _check_header(path, header: list[str], scm) -> None:
    "Refuse a header that is not exactly the SCM's features, with the likely cause."
    if len(header) == 1 and any(d in header[0] for d in ';\t|'):
        d = next(d for d in ';\t|' if d in header[0])
        raise ValueError(f"{path}: the delimiter looks wrong: the header is one column {header[0]!r} holding "
                         f"{d!r}; carma-nb reads comma-separated files (save as CSV with commas)")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice: raise ValueError(f"{path}: columns {twice} appear more than once in the header")
    missing, extra = [n for n in scm.names if n not in header], [c for c in header if c not in scm.names]
    if missing or extra:
        raise ValueError(f"{path}: columns must be exactly the features of {scm.name} {list(scm.names)}; "
                         + (f"missing {missing}" if missing else '') + ('; ' if missing and extra else '')
                         + (f"unknown {extra}" if extra else '')
                         + (' (an empty name: a trailing comma?)' if '' in extra else ''))

def read_applicant_table(path: str | Path, # a CSV file: a header of the SCM's features, one row per applicant
                         scm, # the SCM (or its name)
                        ) -> pd.DataFrame:
    "The applicants as text, one column per feature of `scm` in its order; clear errors for bad files."
    scm = get_scm(scm)
    text = _csv_text(path)
    try: raw = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"input file {str(path)!r} is empty; it needs a header {list(scm.names)}") from None
    except pd.errors.ParserError as e:
        err = _row_lengths_error(path, text) or ValueError(f"{path}: not a readable CSV file ({e})")
        raise err from None
    header = [str(c).strip() for c in raw.iloc[0]]
    _check_header(path, header, scm)
    if len(raw) == 1: raise ValueError(f"{path}: has a header but no applicants; add one row per applicant")
    table = raw.iloc[1:].set_axis(header, axis=1)[list(scm.names)].reset_index(drop=True)
    if (table == '').any().any():                          # an empty field, or a row with too few fields
        err = _row_lengths_error(path, text, len(header))
        if err: raise err
    return table

def parse_applicants(table: pd.DataFrame, # text, as `read_applicant_table` returns
                     path: str | Path = 'input', # named in the errors
                    ) -> torch.Tensor:
    ("The applicants' features as float64 (n, D); refuses a value that is missing, not a number, "
     "or infinite.")
    if not isinstance(table, pd.DataFrame):
        raise TypeError("parse_applicants needs the text table that read_applicant_table returns")
    num = table.apply(pd.to_numeric, errors='coerce')
    bad = num.isna() | np.isinf(num)
    if bad.any().any():
        col = bad.any().idxmax(); row = int(bad[col].to_numpy().argmax())
        v, at, what = table[col].iloc[row], f"(data row {row + 1})", f"{path}: column {col!r} has"
        if v.strip().lower() in _NA_TEXT:
            raise ValueError(f"{what} a missing value {at}; impute or drop it first")
        if np.isinf(num[col].iloc[row]): raise ValueError(f"{what} an infinite value {v!r} {at}")
        hint = '; write 1 or 0 for true or false' if v.strip().lower() in ('true', 'false') else ''
        raise ValueError(f"{what} a non-numeric value {v!r} {at}{hint}")
    return torch.from_numpy(np.array(num.to_numpy(np.float64)))   # a writable copy

def read_applicants(path: str | Path, scm) -> torch.Tensor:
    ("A CSV of applicants with one column per feature of `scm`, as float64 (n, D); "
     "clear errors for bad files.")
    return parse_applicants(read_applicant_table(path, scm), path)


# %% [markdown]
# **Serving.** `serve` is the library's side of the command: the model's domain (chapter 7) decides
# who is served. A row outside it is refused before the model runs; the others get one batched
# forward pass, and a recommendation whose counterfactual would leave the domain is refused too. Every
# row gets a status (chapter 5): `served`, `already accepted`, `no valid action` (the counterfactual is
# still rejected by the classifier) or `refused: <feature> <value> outside <domain> (why)`. Only served
# rows carry targets; refused and no-valid-action rows have no act set, so a program reading the output
# cannot hand anybody an action the model does not stand behind.

# %%
#| export
@dataclass
class Served:
    "What a service answers for a batch of applicants."
    rec: Recommendation        # mask empty, values = x, prob NaN where neither served nor already accepted
    prob_before: torch.Tensor  # (n,) the classifier's probability of each applicant (NaN if refused on input)
    status: np.ndarray         # (n,) str: 'served', 'already accepted', 'no valid action' or 'refused: …'
    refused: torch.Tensor      # (n,) bool

def serve(model: CARMA, # a trained CARMA model with its training range (train_carma, load_carma)
          x: torch.Tensor, # (n, D) applicants, raw features (float64 keeps the values as written)
          margin: float = DOMAIN_MARGIN, # share of the training range added on each side of the domain
         ) -> Served:
    ("Recommendations and a status per applicant; rows outside the model's domain, or leaving it, "
     "are refused.")
    dom = model.domain(margin)
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[1] != model.n_features:
        raise ValueError(f"x must be (n, {model.n_features}): the features {list(model.names)}; "
                         f"got {tuple(x.shape)}")
    n, D, x32 = len(x), model.n_features, x.float()
    ok = ~outside_domain(dom, x).any(1)                     # the model never sees a row outside its domain
    mask, x_cf, accepted = torch.zeros(n, D, dtype=torch.bool), x32.clone(), torch.zeros(n, dtype=torch.bool)
    prob, before = torch.full((n,), torch.nan), torch.full((n,), torch.nan)
    if ok.any():
        rec = model.recommend(x32[ok])              # the model's own serving (its recipe decides idle acts)
        mask[ok], x_cf[ok], prob[ok], accepted[ok] = rec.mask, rec.x_cf, rec.prob, rec.accepted
        before[ok] = model.clf.predict_proba(x32[ok])
    status, refused = recourse_status(dom, x, mask, x_cf, accepted, prob)
    served = torch.from_numpy(status == SERVED)
    mask &= served[:, None]                                 # targets only where served
    prob = torch.where(served | accepted, prob, torch.nan)
    rec = Recommendation(mask, torch.where(mask, x_cf, x32), x_cf, prob, served | accepted, accepted)
    return Served(rec, before, status, refused)


# %% [markdown]
# **Writing.** The output path is checked before any work: it must not be the input (or the model),
# also through a symbolic or hard link, since writing would replace the applicants' file; it must not
# be a folder; and its folder must be writable. The file is written atomically (chapter 0), so it is
# complete or absent, and an error names the output path, never the temporary file. `strict=True`
# (`--strict`) turns any refused row into an error, and then nothing is written.

# %%
#| export
def check_output_path(output: str | Path, # the file to write
                      *inputs: str | Path, # files it must not replace (the applicants' file, the model)
                     ) -> Path:
    "The output path; refuses an input (or a link to it), a folder, and a folder that cannot be written."
    out, name = Path(output), repr(str(output))
    if out.is_dir(): raise ValueError(f"output {name} is a folder; give a file path in it, such as "
                                      f"{str(out / 'actions.csv')!r}")
    for src in inputs:
        if out.exists() and Path(src).exists() and os.path.samefile(out, src):
            raise ValueError(f"output {name} is the file {str(src)!r} (or a link to it): writing would "
                             "replace it; choose another output path")
    folder = out.absolute().parent
    while not folder.exists(): folder = folder.parent          # atomic_write creates the missing folders
    if not folder.is_dir(): raise ValueError(f"output {name}: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output {name}: the folder {str(folder)!r} cannot be written (permission denied)")
    return out

def _write_csv(df: pd.DataFrame, out: Path) -> None:
    "Write `df` atomically; an error names the output path, not the temporary file."
    try:
        with atomic_write(out, 'w') as f: df.to_csv(f, index=False)
    except OSError as e:
        raise ValueError(f"cannot write the output {str(out)!r}: {e.strerror or e}") from None

def refused_summary(status: np.ndarray, # per row, as `serve` returns
                    shown: int = 3, # reasons listed
                   ) -> str:
    "One line about the refused rows: how many, which data rows, the first reasons."
    rows = np.flatnonzero(np.char.startswith(status.astype(str), 'refused'))
    first = '; '.join(f"data row {i + 1}: {status[i].removeprefix('refused: ')}" for i in rows[:shown])
    return f"{len(rows)} of {len(status)} applicants refused ({first}{'; …' if len(rows) > shown else ''})"

def recommend_file(model_path: str | Path, input_path: str | Path, output_path: str | Path,
                   scm: str | None = None,
                   # drop acts with a smaller latent shift (0: none); None: the model's own
                   idle_tol: float | None = None,
                   strict: bool = False, # raise (and write nothing) when any applicant is refused
                  ) -> pd.DataFrame:
    "A status and recommendations for every applicant of a CSV, by a saved CARMA model, written atomically."
    out_path = check_output_path(output_path, input_path, model_path)
    model = load_carma(model_path, scm)
    if idle_tol is not None: model.idle_tol = check_positive(idle_tol, 'idle_tol', zero=True) or None
    table = read_applicant_table(input_path, model.scm)
    s, names = serve(model, parse_applicants(table, input_path)), model.names
    if strict and s.refused.any(): raise ValueError(f"--strict: {refused_summary(s.status)}; nothing written")
    out = table.copy()                                          # the features exactly as read
    out['status'] = s.status
    known = ~s.prob_before.isnan().numpy()                      # refused on input: accepted is unknown
    out['accepted'] = pd.array(np.where(known, s.rec.accepted.numpy(), None), dtype='boolean')
    out['prob_before'] = s.prob_before.numpy()
    for j in get_scm(model.scm).actionable:
        out[f'act_{names[j]}'] = s.rec.mask[:, j].numpy()
        out[f'{names[j]}_target'] = np.where(s.rec.mask[:, j].numpy(), s.rec.values[:, j].numpy(), np.nan)
    out['prob_after'] = s.rec.prob.numpy()
    _write_csv(out, out_path)
    return out


# %% [markdown]
# ### `tune`: the paper's hyperparameter search
#
# Two objectives measured on the **validation** people (never the test people): cost ↓ and causal
# validity ↑. Optuna's TPE sampler proposes each trial; the study lives in a database (a sqlite file by
# default), so several workers — on one machine or many — can run `carma-nb tune` against the same URL
# and share the trials. The point reported is the Pareto trial minimising cost + (1 − validity).
#
# Workers sharing a study must not propose the same trials. TPE starts with random trials and then
# samples from what the study has seen, all from its seeded generator: two workers with one seed propose
# the same first trial, and train the same model twice. So each worker draws its sampler seed from the
# operating system, and reports it (`sampler seed`); `--seed N` makes one worker's proposals repeatable
# (two workers given the same seed get the same proposals, as asked). Every trial trains CARMA with
# seed 0, so that trials differ by their hyperparameters only. The storage URL is opened first, so that
# a typo in it fails at once, before the classifier and the flow are trained, not after.

# %%
#| export
def _suggest(trial) -> dict:
    width = lambda n: trial.suggest_categorical(n, [8, 16, 32])
    return dict(lr=trial.suggest_float('lr', 1e-5, 1e-1, log=True),
                mask_hidden=[width('mask_width')] * trial.suggest_int('mask_layers', 1, 3),
                action_hidden=[width('action_width')] * trial.suggest_int('action_layers', 2, 4),
                epochs=trial.suggest_int('epochs', 100, 500, step=50),
                batch=trial.suggest_categorical('batch', [8, 16, 32, 64, 128, 256]),
                margin=trial.suggest_float('margin', 0.001, 0.020), tau=trial.suggest_float('tau', 0.01, 1.0))

def _shown(url: str) -> str:
    "The URL as printed in messages, with any password hidden."
    from sqlalchemy.engine import make_url
    try: return make_url(url).render_as_string(hide_password=True)
    except Exception: return url

def tune_storage(url: str, # an Optuna database URL: sqlite:///tune.db, postgresql://user@host/db, …
                ):
    "Open (creating its tables if needed) the Optuna database at `url`; errors name the URL and the fix."
    import optuna
    if not isinstance(url, str) or '://' not in url:
        raise ValueError(f"--storage {url!r} is not a database URL; give one such as sqlite:///carma_tune.db "
                         "or postgresql://user:password@host/database")
    try: return optuna.storages.RDBStorage(url)
    except ImportError as e:
        raise ImportError(f"--storage {_shown(url)}: {e} (e.g. psycopg2 for PostgreSQL)") from None
    except Exception as e:
        why = (str(e).splitlines() or [''])[0][:200]
        raise ValueError(f"--storage {_shown(url)} cannot be opened ({type(e).__name__}: {why}); "
                         "check the URL (for sqlite, that its folder exists)") from None

def _tune_study(name: str, profile_name: str, storage: str | None, study_name: str | None, seed: int | None):
    "The shared study (its storage checked first) and the sampler seed this worker uses."
    import optuna
    db = tune_storage(storage or f'sqlite:///carma_tune_{name}.db')
    if seed is None: seed = secrets.randbits(32)                       # a fresh seed per worker
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}; or None for a fresh one")
    study = optuna.create_study(study_name=study_name or f'carma-{name}-{profile_name}', storage=db,
                                directions=['minimize', 'maximize'], load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=int(seed)))
    return study, int(seed)

def tune_carma(scm: str, # the SCM
               trials: int = 20, # trials run by this worker
               # Optuna storage URL (default: sqlite file carma_tune_<scm>.db here)
               storage: str | None = None,
               study_name: str | None = None, profile=None,
               seed: int | None = None, # sampler seed; None: a fresh one, so workers explore different trials
               verbose: bool = True) -> dict:
    ("Two-objective CARMA hyperparameter search (cost ↓, validity ↑ on validation people); "
     "returns the chosen trial.")
    try: import optuna
    except ImportError: raise ImportError("tuning needs Optuna: pip install optuna") from None
    trials = check_whole(trials, 'trials')
    name = get_scm(scm).name
    p = get_profile(profile)
    if not verbose: optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, seed = _tune_study(name, p.name, storage, study_name, seed)     # before any training
    ref = oracle_reference(name, p)
    flow = fit_flow(name, ref.pools.causal, p, verbose=False)
    val = rejected(ref.clf, ref.pools.recourse.val.x)
    def objective(trial):
        hp = _suggest(trial)
        if p.name != 'paper': hp['epochs'] = max(1, round(hp['epochs'] * p.carma_epoch_frac))
        m = train_carma_seeds(name, ref.clf, flow, ref.pools.recourse, seeds=[0], hparams=hp, profile=p,
                              verbose=False)[0]
        r = m.recommend(val)
        met = evaluate_recourse(ref.problem, ref.clf, val, r).metrics
        return met['cost x100'], met['validity %']
    study.optimize(objective, n_trials=trials)
    best = min(study.best_trials, key=lambda t: t.values[0] / 100 + (1 - t.values[1] / 100))
    return {'trial': best.number, 'cost x100': best.values[0], 'validity %': best.values[1],
            'params': best.params, 'trials in study': len(study.trials), 'sampler seed': seed}


# %% [markdown]
# Two workers opening one study propose their first trial (no training needed to see it): with fresh
# seeds they differ; with one seed they are the same. A URL that cannot be opened is refused at once.

# %%
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
with tempfile.TemporaryDirectory() as d:
    url = f'sqlite:///{d}/study.db'
    def first_trial(seed):
        study, used = _tune_study('chain-lin', 'quick', url, None, seed)
        return _suggest(study.ask()), used
    (a, seed_a), (b, seed_b) = first_trial(None), first_trial(None)
    assert a != b and seed_a != seed_b                         # two workers, two seeds, two different trials
    test_eq(first_trial(7), first_trial(7))                    # the same seed, given twice: the same trial
    test_fail(lambda: tune_storage(f'sqlite:///{d}/no/such/folder/x.db'), contains='cannot be opened')
    test_fail(lambda: tune_storage('carma_tune.db'), contains='is not a database URL')
    test_fail(lambda: _tune_study('chain-lin', 'quick', url, None, -1), contains='seed must be an integer')
    test_eq(_shown('postgresql://ann:secret@db.example/tune'), 'postgresql://ann:***@db.example/tune')
    for who, hp in (('A', a), ('B', b)): print(f'worker {who}:', {k: hp[k] for k in ('lr', 'batch')})


# %% [markdown]
# ### The entry point

# %% [markdown]
# Importing the user's module is the one step that runs their code, exactly as `python -c "import
# my_world"` would; it happens only when they name it. A file path is imported under a name of its own
# (once per process, so a second call is a no-op), and every way it can fail says what to give instead.

# %%
#| export
def import_user_module(spec: str # a dotted module name importable from here, or a path to a .py file
                      ):
    "Import the module that registers a user's SCM (`--import`); return the module."
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("--import needs a module name or a .py file path")
    if spec.endswith('.py') or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--import {spec}: no such file; give a .py file that calls register_scm")
        name = f'_carma_user_{path.stem}_{abs(hash(str(path))):x}'
        if name in sys.modules: return sys.modules[name]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = mod
        try: mod_spec.loader.exec_module(mod)
        except BaseException: del sys.modules[name]; raise
        return mod
    # as `python -m` does: modules beside the user
    if os.getcwd() not in sys.path: sys.path.insert(0, os.getcwd())
    try: return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        raise ImportError(f"--import {spec}: {e}; give a module importable from this folder "
                          "or the path to its .py file") from None

def _known_scm(scm: str, imports=()) -> str:
    "Import the `--import` modules, then check that `scm` names a registered SCM (with the fix in the error)."
    for m in imports: import_user_module(m)
    try: return get_scm(scm).name
    except ValueError as e:
        raise ValueError(f"{e}. An SCM of your own must be registered in this process: add --import MODULE "
                         "(a module or .py file that calls register_scm)") from None


# %%
with tempfile.TemporaryDirectory() as d:
    world = Path(d)/'toy_world.py'
    world.write_text("from carma_nb.scm import SCM, additive, normal, register_scm\n"
                     "nodes = [additive('a', (), lambda x: 0., normal(0, 1)), "
                     "additive('b', (0,), lambda x: x[0], normal(0, 1))]\n"
                     "register_scm('toy-world', lambda: SCM('toy-world', nodes, lambda x, u: x[1] > 0))\n")
    test_fail(lambda: _known_scm('toy-world'), contains='add --import MODULE')
    test_eq(_known_scm('toy-world', [str(world)]), 'toy-world')
    # once per process: no second registration
    test_eq(import_user_module(str(world)), import_user_module(str(world)))
    test_fail(lambda: import_user_module(str(Path(d)/'nope.py')), contains='no such file')
    test_fail(lambda: import_user_module('no_such_module_xyz'), contains='give a module importable')


# %%
#| export
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='carma-nb',
                                 description='Amortized causal algorithmic recourse (CARMA): '
                                             'reproduce the paper, serve recommendations, tune.')
    sub = ap.add_subparsers(dest='command', required=True)
    r = sub.add_parser('reproduce', help='regenerate every table and figure of the paper',
                       description='Run every experiment (resuming finished jobs) '
                                   'and write the tables and figures.')
    r.add_argument('--profile', choices=['quick', 'paper'], default='quick',
                   help='quick: minutes; paper: the paper settings (default: quick)')
    r.add_argument('--scm', nargs='+', default=list(SCM_NAMES), choices=list(SCM_NAMES), metavar='NAME',
                   help='SCMs to run (default: all seven)')
    r.add_argument('--seeds', type=int, default=None,
                   help="seeds per SCM and method (default: the profile's)")
    r.add_argument('--jobs', type=int, default=2, help='parallel worker processes (default: 2)')
    r.add_argument('--out', default=None,
                   help='output folder (default: figures/ for paper, figures/_quick/ for quick)')
    r.add_argument('--no-notebooks', action='store_true',
                   help='do not execute the chapters (their figures are then not refreshed)')
    r.add_argument('--update-notebooks', action='store_true',
                   help='save the executed chapters with their new outputs (for maintainers)')
    c = sub.add_parser('recommend', help='recommendations for a CSV of applicants',
                       description='Serve a CSV of applicants with a saved CARMA model.')
    c.add_argument('--scm', required=True,
                   help='the SCM the model was trained for (checked against the model)')
    c.add_argument('--model', required=True, help='a CARMA checkpoint written by save_carma')
    c.add_argument('--input', required=True, help='CSV with one column per feature, named as in the SCM')
    c.add_argument('--output', required=True, help='CSV to write (atomically)')
    c.add_argument('--idle-tol', type=float, default=None, metavar='TOL',
                   help="drop acts whose latent shift is below TOL, where the applicant stays accepted "
                        "(default: the model's own setting, chapter 9; 0 keeps every act)")
    c.add_argument('--strict', action='store_true',
                   help="exit with an error, writing nothing, if any applicant is outside the model's domain")
    t = sub.add_parser('tune', help='two-objective hyperparameter search (Optuna)',
                       description="Tune CARMA for one SCM (the paper's two-objective search).")
    t.add_argument('--scm', required=True,
                   help=f"one of {', '.join(SCM_NAMES)}, or an SCM registered by an --import module")
    for q in (c, t):
        q.add_argument('--import', dest='imports', action='append', default=[], metavar='MODULE',
                       help='a module (dotted name or .py file) to import first; it registers your own SCM '
                            'with register_scm (repeatable)')
    t.add_argument('--trials', type=int, default=20, help='trials run by this worker (default: 20)')
    t.add_argument('--storage', default=None,
                   help='Optuna storage URL shared by workers (default: sqlite file carma_tune_<scm>.db)')
    t.add_argument('--profile', choices=['quick', 'paper'], default='paper')
    t.add_argument('--seed', type=int, default=None,
                   help="this worker's sampler seed (default: a fresh one, so that workers sharing a study "
                        "explore different trials; two workers given the same seed propose the same trials)")
    return ap

def _run_notebook(path: str, write: bool = False) -> str:
    ("Execute one chapter in its folder (figures go to $CARMA_FIGURE_DIR); with `write`, "
     "save its outputs in place.")
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    nb, cwd = read_nb(path), os.getcwd()
    os.chdir(Path(path).parent)
    # parallel chapters must not rewrite the package
    skip = lambda c: c.source.strip() == '#| hide\nimport nbdev; nbdev.nbdev_' + 'export()'
    # (the string is split so that nbdev_test, which skips every cell containing that call,
    # still runs this one)
    try: CaptureShell().run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd)
    if write: write_nb(nb, path)
    return Path(path).name

def _reproduce(a) -> None:
    import dataclasses
    p = get_profile(a.profile)
    if a.seeds is not None:
        if a.seeds < 1: raise SystemExit('carma-nb: --seeds must be ≥ 1')
        p = dataclasses.replace(p, seeds=a.seeds)
    out = Path(a.out) if a.out else figure_dir(p)
    out.mkdir(parents=True, exist_ok=True)
    os.environ['CARMA_FIGURE_DIR'] = str(out.resolve()); os.environ['CARMA_PROFILE'] = p.name
    t0 = time.perf_counter()
    res = run_experiments(p, a.scm, jobs=a.jobs, out=out)
    print(f'experiments done in {time.perf_counter() - t0:.0f} s; results in {results_path(out, p)}')
    cols = [c for c in ('oracle cost', 'CARMA cost', 'CARMA cost std', 'CARMA validity %',
                        'improved CARMA cost', 'DiCE-VAE cost') if c in (t := table1(res))]
    print(markdown_table(t[cols].round(2)))         # chapter 14 writes figures/table1 with every column
    nbs = project_root()/'nbs'
    if not a.no_notebooks and nbs.is_dir() and p.seeds == get_profile(a.profile).seeds:
        heavy = ('14_paper.ipynb', '11_vaca.ipynb', '08_training.ipynb', '06_oracle.ipynb')
        # longest first
        order = sorted(sorted(nbs.glob('[01][0-9]_*.ipynb')), key=lambda f: f.name not in heavy)
        t, failed = time.perf_counter(), []
        with ProcessPoolExecutor(a.jobs, mp_context=get_context('spawn'), initializer=_worker_init) as ex:
            futs = {ex.submit(_run_notebook, str(f), a.update_notebooks): f.name for f in order}
            for f in as_completed(futs):
                try:
                    f.result()
                    print(f'{futs[f]}: executed ({time.perf_counter() - t:.0f} s since the chapters started)')
                except Exception as e:
                    failed.append(futs[f])
                    print(f'{futs[f]}: FAILED: {type(e).__name__}: {e}', file=sys.stderr)
        if failed: raise RuntimeError(f"chapters failed: {failed}; run them one by one to see the traceback")
        # last: its results table reads the Table 1 that chapter 14 writes
        if (nbs/'index.ipynb').exists():
            _run_notebook(str(nbs/'index.ipynb'), a.update_notebooks)
            print('index.ipynb: executed'
                  + ('; run `python tools/make_readme.py` to refresh README.md' if a.update_notebooks
                     else ''))
    print(f'reproduce finished in {time.perf_counter() - t0:.0f} s; outputs in {out}')

def _recommend_command(a) -> None:
    "carma-nb recommend: serve the file; print one line of counts, and one about refused rows (stderr)."
    t0 = time.perf_counter()
    out = recommend_file(a.model, a.input, a.output, a.scm, a.idle_tol, a.strict)
    st = out['status'].astype(str)
    counts = {k: int((st == k).sum()) for k in ('served', 'already accepted', 'no valid action')}
    counts['refused'] = int(st.str.startswith('refused').sum())
    print(f"{len(out)} applicants: " + ', '.join(f'{v} {k}' for k, v in counts.items())
          + f"; {time.perf_counter() - t0:.2f} s → {a.output}")
    if counts['refused']:
        print(f"carma-nb recommend: warning: {refused_summary(out['status'].to_numpy())}; they get no "
              "targets, the status column says why, and --strict makes this an error", file=sys.stderr)

def main(argv: list[str] | None = None) -> int:
    "The `carma-nb` command."
    a = _parser().parse_args(argv)
    try:
        if a.command in ('recommend', 'tune'): _known_scm(a.scm, a.imports)
        if a.command == 'reproduce': _reproduce(a)
        elif a.command == 'recommend':
            _recommend_command(a)
        elif a.command == 'tune':
            best = tune_carma(a.scm, a.trials, a.storage, profile=a.profile, seed=a.seed)
            print(json.dumps(best, indent=1))
    except (ValueError, OSError, ImportError, KeyError, RuntimeError) as e:
        print(f'carma-nb {a.command}: error: {e}', file=sys.stderr)
        return 2
    return 0


# %% [markdown]
# The command line at work, in-process: a saved CARMA model of loan serves a CSV of applicants, and
# bad files are refused with a clear message.

# %%
from carma_nb.carma import save_carma
from carma_nb.training import train_carma
from carma_nb.recourse import describe_domain
ref = oracle_reference('loan', 'quick')
carma = train_carma('loan', ref.clf, fit_flow('loan', ref.pools.causal, 'quick', verbose=False),
                    ref.pools.recourse, profile='quick', verbose=False)
loan = get_scm('loan')
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    save_carma(carma, d/'carma_loan.pt')
    pd.DataFrame(ref.pools.recourse.test.x[:1000].numpy(), columns=loan.names).to_csv(d/'people.csv',
                                                                                      index=False)
    run = lambda inp, out, *more: main(['recommend', '--scm', 'loan', '--model', str(d/'carma_loan.pt'),
                                        '--input', str(d/inp), '--output', str(d/out), *more])
    test_eq(run('people.csv', 'actions.csv'), 0)
    actions = pd.read_csv(d/'actions.csv')
    test_eq(len(actions), 1000)
    acts = [c for c in actions if c.startswith('act_')]
    test_eq(actions.loc[actions['status'] != 'served', acts].to_numpy().any(), False)   # targets: served only
    assert set(actions['status']) <= {'served', 'already accepted', 'no valid action'}
    test_eq(run('people.csv', 'idle.csv', '--idle-tol', '0.05'), 0)
    fewer = pd.read_csv(d/'idle.csv')
    # dropping idle acts only removes acts
    assert not (fewer[acts].to_numpy() & ~actions[acts].to_numpy()).any()
    test_eq(run('people.csv', 'x.csv', '--idle-tol', '-1'), 2)
    assert not (d/'x.csv').exists()
    pd.DataFrame({'age': [30]}).to_csv(d/'bad.csv', index=False)
    test_fail(lambda: read_applicants(d/'bad.csv', 'loan'), contains="missing ['gender', 'education'")
    pd.read_csv(d/'people.csv').assign(colour=1).to_csv(d/'extra.csv', index=False)
    test_fail(lambda: read_applicants(d/'extra.csv', 'loan'), contains="unknown ['colour']")
    df = pd.read_csv(d/'people.csv').astype(object); df.loc[3, 'income'] = 'lots'
    df.to_csv(d/'nan.csv', index=False)
    test_fail(lambda: read_applicants(d/'nan.csv', 'loan'),
              contains="column 'income' has a non-numeric value 'lots' (data row 4)")
    test_eq(main(['recommend', '--scm', 'chain-lin', '--model', str(d/'carma_loan.pt'),
                  '--input', str(d/'people.csv'), '--output', str(d/'x.csv')]), 2)
    assert not (d/'x.csv').exists()
actions.head(3).T

# %% [markdown]
# The statuses of those 1 000 test people. The model's domain is its SCM's kinds and bounds ∩ its
# training range widened by 10 % (chapter 5); fresh people from the SCM fall inside it, and so do the
# counterfactuals CARMA serves them:

# %%
pd.DataFrame({'domain': [describe_domain(carma.domain(), j) for j in range(7)]}, index=loan.names).T

# %%
test_eq(actions['status'].str.startswith('refused').any(), False)
actions['status'].value_counts()

# %% [markdown]
# Applicants the model knows nothing about are refused, row by row, and the others are still served:
# a gender of 7 or 0.5, an education of 0.7 (where the SCM's own equation has no inverse), an age of
# −1000 or $10^{30}$. The output repeats every value exactly as it was written, and `--strict` makes
# any refusal an error that writes nothing.

# %%
rows = ['7,30,0,1,1,1,1', '0.5,30,0,1,1,1,1', '1,30,0.7,1,1,1,1', '1,-1000,0,1,1,1,1', '1,1e30,0,1,1,1,1',
        '1,16777217,0,1,1,1,1', '0,12,0.1,2,3,-2,-3', '1,5,0,0,0,3,4']
odd = pd.read_csv(io.StringIO('\n'.join([','.join(loan.names), *rows])), dtype=str)
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    save_carma(carma, d/'carma_loan.pt'); odd.to_csv(d/'odd.csv', index=False)
    args = ['recommend', '--scm', 'loan', '--model', str(d/'carma_loan.pt'), '--input', str(d/'odd.csv')]
    test_eq(main([*args, '--output', str(d/'odd_out.csv')]), 0)
    served = pd.read_csv(d/'odd_out.csv', dtype=str, keep_default_na=False)
    test_eq(main([*args, '--output', str(d/'strict.csv'), '--strict']), 2)
    assert not (d/'strict.csv').exists()
    test_fail(lambda: check_output_path(d/'odd.csv', d/'odd.csv'), contains='writing would replace it')
    test_fail(lambda: check_output_path(d, d/'odd.csv'), contains='is a folder')
test_eq(served[list(loan.names)].values.tolist(), odd.values.tolist())    # every value exactly as written
test_eq(served['status'].str.startswith('refused').tolist(), [True] * 6 + [False] * 2)
acts = [f'act_{loan.names[j]}' for j in loan.actionable]
test_eq(served.loc[:5, acts].values.tolist(), [['False'] * 4] * 6)          # refused: no act
served[['gender', 'age', 'education', 'status']]

# %% [markdown]
# Malformed files get a message each, naming the row, the file or the likely cause; the table of every
# case, run against the installed command, is `tests/test_recommend_files.py`.

# %%
head = ','.join(loan.names)
bad_files = {   # file: (content, the message it gets)
    'shifted.csv': (head + '\n0,30,0,1,1,1,1,5\n', 'data row 1 (line 2) has 8 fields but the header has 7'),
    'header.csv': (head + '\n', 'has a header but no applicants'),
    'booleans.csv': (head + '\nTrue,30,0,1,1,1,1\n', "non-numeric value 'True' (data row 1); write 1 or 0"),
    'semicolons.csv': (head.replace(',', ';') + '\n0;30;0;1;1;1;1\n', 'the delimiter looks wrong'),
    'latin1.csv': ((head + '\n0,30,0,1,1,1,é\n').encode('latin-1'), 'is not UTF-8 text: byte 0xe9 on line 2')}
with tempfile.TemporaryDirectory() as d:
    for name, (content, message) in bad_files.items():
        f = Path(d)/name
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        test_fail(lambda: read_applicants(f, 'loan'), contains=message)

# %%
#| hide
import nbdev; nbdev.nbdev_export()

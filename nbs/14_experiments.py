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
# > writes one tidy table; and the `carma-nb` command line around it and the service of chapter 13.
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
import importlib
import importlib.util
import json
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

from carma_nb.carma import carma_hparams
from carma_nb.training import CarmaOptions, get_recipe, train_carma, train_carma_seeds
from carma_nb.core import (TRAINER_VERSION, Profile, TrainOptions, atomic_write, cache_dir, check_whole,
                           config_key, figure_dir, get_profile, markdown_table, progress, project_root)
from carma_nb.data import Pool, Split
from carma_nb.dice_vae import dice_hparams, train_dice_vae_seeds
from carma_nb.flow import fit_flow
from carma_nb.oracle import ORACLE_SEARCH, cached_oracle, oracle_reference, original_convention_metrics
from carma_nb.preferences import PAPER_PREFERENCE_WEIGHTS
from carma_nb.recourse import evaluate_recourse, recourse_problem, rejected, time_per_person
from carma_nb.scm import SCM_NAMES, get_scm
from carma_nb.serving import _known_scm, import_user_module, recommend_file
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
    if bad := [m for m in (*methods, *studies) if m not in _WEIGHT]:
        raise ValueError(f"unknown methods {bad}; known: {sorted(_WEIGHT)}")
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
        models = train_dice_vae_seeds(job.scm, ref.clf, ref.pools.recourse, seeds,
                                      TrainOptions(profile=p, verbose=False))
        return [_score(ref, ref.problem, m.recommend,
                       {**base, 'seed': s, 'train s per model': float(m.history['train_seconds'])})
                for s, m in zip(seeds, models)]
    w = PAPER_PREFERENCE_WEIGHTS if job.method == 'carma-weighted' else None
    cm = (fit_vaca(job.scm, ref.pools.causal, p, verbose=False) if job.method == 'carma-vaca'
          else fit_flow(job.scm, ref.pools.causal, p, verbose=False))
    recipe = 'improved' if job.method == 'carma-improved' else 'paper'   # (the loan studies: the paper's)
    models = train_carma_seeds(job.scm, ref.clf, cm, _fraction_pool(ref.pools.recourse, job.fraction), seeds,
                               CarmaOptions(recipe=recipe, profile=p, weights=w, verbose=False))
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
# When the parent is killed outright (`kill -9`, the out-of-memory killer), nobody tells its pool's
# workers: each would finish the job it holds — possibly an hour of training, holding that model's cache
# lock — and then wait forever on a queue nobody feeds. So every worker starts a daemon thread that waits
# on its parent's *sentinel* (a pipe end `multiprocessing` makes readable the moment the parent ends,
# however it ends) and then ends the worker at once with `os._exit`. A checkpoint it was saving leaves a
# temporary file, which the next run that takes that model's lock removes (chapter 0).

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
    (t := threading.Thread(target=watch, name='exit-with-parent', daemon=True)).start()
    return t


# %% [markdown]
# `tests/test_cli.py` proves it: a parent process whose single worker is busy on a long job is
# killed with `SIGKILL`, and the worker ends within seconds.

# %%
#| export
def _worker_setup():
    "One torch thread and no progress bars, in every worker (a process, or a Ray task)."
    torch.set_num_threads(1); os.environ['CARMA_QUIET'] = '1'

def _worker_init():
    _worker_setup(); exit_with_parent()

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
    cfg = {'job': asdict(job), 'profile': asdict(p), 'seeds': [*range(p.seeds)], 'trainer': TRAINER_VERSION,
           'hparams': {k: list(v) if isinstance(v, tuple) else v for k, v in hp.items()} if hp else None,
           'recipe': {**recipe.config(), 'idle_tol': recipe.idle_tol} if recipe else None}
    if job.method.startswith('oracle'): cfg['search'] = ORACLE_SEARCH        # decides the time it reports
    return cfg

def job_path(job_dir: str | Path, job: Job, profile=None) -> Path:
    ("The file that stores a job's rows: `<job key>__<hash of job_config>.json`, "
     "so a changed setting never reuses old rows.")
    return Path(job_dir)/f'{job.key}__{config_key(job_config(job, profile))[:12]}.json'

def _run_timed(job: Job, profile: Profile) -> list[dict]:
    "A job's rows, each with the job's wall time."
    t0 = time.perf_counter()
    rows = run_job(job, profile)      # the Profile itself, not its name: a worker must not reload stock
    for r in rows: r['job seconds'] = time.perf_counter() - t0
    return rows

def _store(path: Path, job: Job, profile: Profile, rows: list[dict]) -> None:
    with atomic_write(path, 'w') as f: json.dump({'config': job_config(job, profile), 'rows': rows}, f)

def _ray_task(job: Job, profile: Profile) -> list[dict]:
    _worker_setup(); return _run_timed(job, profile)

def _ray_rows(todo: list[Job], profile: Profile, jobs: int, address: str | None):
    "(job, rows) of each job as a Ray task finishes, on the cluster at `address` (None: a local one)."
    try: import ray
    except ImportError: raise ImportError("executor 'ray' needs Ray: pip install -e '.[cluster]'") from None
    own = not ray.is_initialized()
    # a local instance shares this machine's model cache; a cluster's workers use their own CARMA_CACHE
    env = {} if address else {'env_vars': {'CARMA_CACHE': str(cache_dir())}}
    if own: ray.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                     log_to_driver=False, runtime_env=env)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        refs = {task.remote(j, profile): j for j in todo}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            yield refs.pop(done[0]), ray.get(done[0])
    finally:
        if own: ray.shutdown()

def _pool_rows(todo: list[Job], profile: Profile, jobs: int):
    "(job, rows) of each job as it finishes: here in order (jobs=1), or in `jobs` worker processes."
    if jobs == 1:
        for j in todo: yield j, _run_timed(j, profile)
        return
    with ProcessPoolExecutor(jobs, mp_context=get_context('spawn'), initializer=_worker_init) as ex:
        futs = {ex.submit(_run_timed, j, profile): j for j in todo}
        for f in as_completed(futs): yield futs[f], f.result()

EXECUTORS = ('process', 'ray')   # where jobs run: local worker processes, or Ray tasks on a cluster

@dataclass(frozen=True)
class Workers:
    "Where the experiment jobs run: local worker processes, or Ray tasks; checked when made."
    jobs: int = 1                 # worker processes, or the CPUs of a local Ray instance (1: here, in order)
    executor: str = 'process'     # 'process' or 'ray'
    address: str | None = None    # the Ray cluster, e.g. ray://head:10001 (None: start a local instance)

    def __post_init__(self):
        object.__setattr__(self, 'jobs', check_whole(self.jobs, 'jobs'))
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")

def results_path(out: str | Path, profile=None) -> Path:
    "The tidy results table of a run: `<out>/results_<profile>.csv`."
    return Path(out)/f'results_{get_profile(profile).name}.csv'

def run_experiments(profile=None, # quick or paper
                    scms=SCM_NAMES, methods=TABLE1_METHODS, studies=LOAN_STUDIES,
                    workers: Workers | None = None, # where the jobs run (default: here, in order)
                    # where job files and the results CSV go (default: the figure folder)
                    out: str | Path | None = None,
                    verbose: bool = True) -> pd.DataFrame:
    "Run (or resume) every planned job and return the tidy results table (also written as CSV)."
    p, w = get_profile(profile), workers or Workers()
    if not isinstance(w, Workers):
        raise TypeError(f"workers must be a Workers, e.g. Workers(jobs=2), got {w!r}")
    out = Path(out) if out is not None else figure_dir(p)
    job_dir = out/'jobs'/p.name
    job_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_jobs(scms, methods, studies)
    paths = {j: job_path(job_dir, j, p) for j in plan}
    todo = [j for j in plan if not paths[j].exists()]
    if verbose: print(f'{len(plan)} jobs planned, {len(plan) - len(todo)} already done, {len(todo)} to run '
                      f'({p.name} profile, ' + (f'{w.jobs} worker(s))' if w.executor == 'process'
                                               else f'Ray at {w.address or "a local instance"})'))
    bar = progress(total=len(todo), desc='experiments', disable=None if verbose else True)
    done = _ray_rows(todo, p, w.jobs, w.address) if w.executor == 'ray' else _pool_rows(todo, p, w.jobs)
    for j, rows in done: _store(paths[j], j, p, rows); bar.update()
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
    run = lambda p='quick', methods=('oracle', 'carma'): run_experiments(p, ['chain-lin'], methods=methods,
                                                                         studies=(), out=d, verbose=False)
    res = run()
    test_eq(sorted(res['method'].unique()), ['carma', 'oracle'])
    test_eq(len(res), 1 + get_profile('quick').seeds)
    t0 = time.perf_counter()
    again = run()
    assert time.perf_counter() - t0 < 5
    test_eq(again[['cost x100']].to_numpy(), res[['cost x100']].to_numpy())
    assert results_path(d, 'quick').exists()
    one_seed = dataclasses.replace(get_profile('quick'), seeds=1)          # what `--seeds 1` makes
    test_ne(job_path(d, Job('chain-lin', 'carma'), one_seed), job_path(d, Job('chain-lin', 'carma'), 'quick'))
    test_eq(len(run(one_seed, ('carma',))), 1)
res[['scm', 'method', 'seed', 'cost x100', 'validity %', 'acts', 'ms per person (batch size 1)']].round(3)


# %% [markdown]
# **More machines.** Jobs are independent, so a sweep outgrows one machine only in time.
# `Workers(executor='ray')` runs each job as a Ray task (`pip install -e '.[cluster]'`) on the cluster at
# `address`, or on a local instance with `jobs` CPUs. Workers return their rows and this process writes
# the job files; each worker trains into its machine's model cache (point `CARMA_CACHE` at shared storage;
# `tests/test_ray.py`). `tune_on_ray` (below) starts tuning workers as Ray tasks on one shared study.

# %% [markdown]
# ## The command line
#
# `carma-nb` (installed with the package) wraps the runner and the deployment path:
#
# - `carma-nb reproduce [--profile quick|paper] [--scm NAME ...] [--seeds N] [--jobs N] [--out DIR]
#   [--executor process|ray [--address ADDRESS]]` runs the plan, writes the results table, Table 1,
#   Table 7 and Fig. 8, and — from a source checkout — executes the chapters so that every figure is
#   regenerated into the same folder;
# - `carma-nb recommend --scm loan --model PATH --input people.csv --output actions.csv [--strict]` serves
#   a file of applicants (CSV, or Parquet when named `*.parquet`) with a saved CARMA model (`save_carma`,
#   chapter 7), chunk by chunk, each row with a status (`recommend_file`, chapter 13);
# - `carma-nb fit --data table.csv --graph graph.yaml --out model.pt` trains a model of your own table and
#   causal graph, which `carma-nb recommend --model model.pt …` serves without `--scm` (chapter 18);
# - `carma-nb tune --scm NAME --trials N [--storage URL] [--seed N]` runs the two-objective hyperparameter
#   search of the paper's Appendix B with Optuna; workers on several machines share one study through a
#   database URL (`--storage postgresql://…`): start one `carma-nb tune` per machine, or let Ray start
#   them (`--executor ray --address ADDRESS --workers N`).
#
# `tests/test_cli.py` runs each command in-process and as the installed program.
#
# `recommend` and `tune` also serve SCMs of one's own. A new process knows only the seven SCMs of the
# paper, and an SCM's equations are code, which no checkpoint carries (checkpoints hold tensors and
# JSON only, and are never unpickled). So the module that calls `register_scm` is named on the command
# line, `--import my_world` (a dotted module name) or `--import path/to/my_world.py`, and imported first.

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
# the same trials. So each worker draws its sampler seed from the operating system, and reports it
# (`sampler seed`); `--seed N` makes one worker's proposals repeatable. Every trial trains CARMA with
# seed 0, so that trials differ by their hyperparameters only. The storage URL is opened first, so that
# a typo in it fails before the classifier and the flow are trained.

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
    trials, name, p = check_whole(trials, 'trials'), get_scm(scm).name, get_profile(profile)
    if not verbose: optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, seed = _tune_study(name, p.name, storage, study_name, seed)     # before any training
    ref = oracle_reference(name, p)
    flow = fit_flow(name, ref.pools.causal, p, verbose=False)
    val = rejected(ref.clf, ref.pools.recourse.val.x)
    def objective(trial):
        hp = _suggest(trial)
        if p.name != 'paper': hp['epochs'] = max(1, round(hp['epochs'] * p.carma_epoch_frac))
        m = train_carma(name, ref.clf, flow, ref.pools.recourse, 0, hparams=hp, profile=p, verbose=False)
        r = m.recommend(val)
        met = evaluate_recourse(ref.problem, ref.clf, val, r).metrics
        return met['cost x100'], met['validity %']
    study.optimize(objective, n_trials=trials)
    best = min(study.best_trials, key=lambda t: t.values[0] / 100 + (1 - t.values[1] / 100))
    return {'trial': best.number, 'cost x100': best.values[0], 'validity %': best.values[1],
            'params': best.params, 'trials in study': len(study.trials), 'sampler seed': seed}

def _tune_task(scm: str, trials: int, storage: str, study_name: str | None, profile) -> dict:
    _worker_setup(); return tune_carma(scm, trials, storage, study_name, profile, verbose=False)

def tune_on_ray(scm: str, # the SCM (one of the paper's: a Ray worker imports no module of yours)
                workers: int = 2, # tune_carma workers, each a Ray task with a fresh sampler seed
                trials: int = 20, # trials per worker
                storage: str | None = None, # the shared study's database (default: a sqlite file here)
                profile=None, address: str | None = None, # the Ray cluster (None: a local instance)
               ) -> dict:
    "`tune_carma` in `workers` Ray tasks sharing one study; the chosen trial once all have finished."
    try: import ray
    except ImportError: raise ImportError("executor 'ray' needs Ray: pip install -e '.[cluster]'") from None
    name, workers = get_scm(scm).name, check_whole(workers, 'workers')
    if address and (storage is None or storage.startswith('sqlite')):
        raise ValueError("tuning on a Ray cluster needs --storage, a database every machine reaches "
                         "(e.g. postgresql://user:password@host/db); a sqlite file is one machine's")
    storage = storage or f'sqlite:///{Path(f"carma_tune_{name}.db").absolute()}'
    tune_storage(storage)                                                  # refused here, before any task
    own = not ray.is_initialized()
    env = {} if address else {'env_vars': {'CARMA_CACHE': str(cache_dir())}}
    if own: ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, runtime_env=env)
    try:
        task, p = ray.remote(num_cpus=1, max_retries=0)(_tune_task), get_profile(profile)
        found = ray.get([task.remote(name, trials, storage, None, p) for _ in range(workers)])
    finally:
        if own: ray.shutdown()
    return max(found, key=lambda r: r['trials in study'])        # the last to finish saw every trial


# %% [markdown]
# ### The entry point

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
    r.add_argument('--out', default=None, help='output folder (default: figures/; figures/_quick/ if quick)')
    r.add_argument('--no-notebooks', action='store_true',
                   help='do not execute the chapters (their figures are then not refreshed)')
    r.add_argument('--update-notebooks', action='store_true',
                   help='save the executed chapters with their new outputs (for maintainers)')
    c = sub.add_parser('recommend', help='recommendations for a CSV of applicants',
                       description='Serve a CSV or Parquet file of applicants with a saved CARMA model.')
    _recommend_arguments(c)
    f = sub.add_parser('fit', help='a model of your own table and causal graph (chapter 18)',
                       description='Train a classifier, a causal flow and CARMA on a table and its graph.')
    from carma_nb.fitting import fit_arguments   # chapter 18's (the lazy import keeps the chapters in order)
    fit_arguments(f)
    t = sub.add_parser('tune', help='two-objective hyperparameter search (Optuna)',
                       description="Tune CARMA for one SCM (the paper's two-objective search).")
    t.add_argument('--scm', required=True,
                   help=f"one of {', '.join(SCM_NAMES)}, or an SCM registered by an --import module")
    t.add_argument('--trials', type=int, default=20, help='trials run by this worker (default: 20)')
    t.add_argument('--storage', default=None,
                   help='Optuna storage URL shared by workers (default: sqlite file carma_tune_<scm>.db)')
    t.add_argument('--profile', choices=['quick', 'paper'], default='paper')
    t.add_argument('--workers', type=int, default=2, help='with --executor ray: tuning workers (default: 2)')
    t.add_argument('--seed', type=int, default=None,
                   help="this worker's sampler seed (default: a fresh one, so that workers sharing a study "
                        "explore different trials; two workers given the same seed propose the same trials)")
    _shared_arguments(r, c, t)
    return ap

def _recommend_arguments(c) -> None:
    "The arguments of `carma-nb recommend`."
    c.add_argument('--scm', help="the SCM the model must be of (default: the model's own); a model of your "
                                 "own world (carma-nb fit) knows its world")
    c.add_argument('--model', required=True, help='a CARMA checkpoint written by save_carma or carma-nb fit')
    c.add_argument('--input', required=True,
                   help='CSV or Parquet (*.parquet) file with one column per feature, named as in the SCM')
    c.add_argument('--output', required=True,
                   help='CSV or Parquet (*.parquet) file to write, chunk by chunk and atomically')
    c.add_argument('--idle-tol', type=float, default=None, metavar='TOL',
                   help="drop acts whose latent shift is below TOL, where the applicant stays accepted "
                        "(default: the model's own setting, chapter 9; 0 keeps every act)")
    c.add_argument('--strict', action='store_true',
                   help="exit with an error, writing nothing, if any applicant is outside the model's domain")

def _shared_arguments(reproduce, recommend, tune) -> None:
    "--import on recommend and tune (your own SCM); --executor and --address on reproduce and tune (Ray)."
    for q in (recommend, tune):
        q.add_argument('--import', dest='imports', action='append', default=[], metavar='MODULE',
                       help='a module (dotted name or .py file) to import first; it registers your own SCM '
                            'with register_scm (repeatable)')
    for q in (reproduce, tune):
        q.add_argument('--executor', choices=EXECUTORS, default='process',
                       help="where the jobs (reproduce) or tuning workers (tune) run: here (default), or as "
                            "Ray tasks (pip install -e '.[cluster]')")
        q.add_argument('--address', default=None,
                       help='the Ray cluster for --executor ray, e.g. ray://head:10001 or auto '
                            '(default: start a local instance)')

def _run_notebook(path: str, write: bool = False) -> str:
    ("Execute one chapter in its folder (figures go to $CARMA_FIGURE_DIR); with `write`, "
     "save its outputs in place.")
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    nb, cwd = read_nb(path), os.getcwd()
    for c in (c for c in nb.cells if c.cell_type == 'code'): c.outputs = []   # (else a silent cell's stay)
    os.chdir(Path(path).parent)
    # parallel chapters must not rewrite the package
    skip = lambda c: c.source.strip() == '#| hide\nimport nbdev; nbdev.nbdev_' + 'export()'
    # (split: nbdev_test skips every cell that contains the call, and must run this one)
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
    res = run_experiments(p, a.scm, workers=Workers(a.jobs, a.executor, a.address), out=out)
    print(f'experiments done in {time.perf_counter() - t0:.0f} s; results in {results_path(out, p)}')
    from carma_nb.paper import table1    # chapter 15's (it imports this module)
    cols = [c for c in ('oracle cost', 'CARMA cost', 'CARMA cost std', 'CARMA validity %',
                        'improved CARMA cost', 'DiCE-VAE cost') if c in (t := table1(res))]
    print(markdown_table(t[cols].round(2)))         # chapter 15 writes figures/table1 with every column
    nbs = project_root()/'nbs'
    if not a.no_notebooks and nbs.is_dir() and p.seeds == get_profile(a.profile).seeds:
        heavy = ('15_paper.ipynb', '11_vaca.ipynb', '08_training.ipynb', '06_oracle.ipynb')   # first
        order = sorted(sorted(nbs.glob('[01][0-9]_*.ipynb')), key=lambda f: f.name not in heavy)
        t, failed = time.perf_counter(), []
        with ProcessPoolExecutor(a.jobs, mp_context=get_context('spawn'), initializer=_worker_init) as ex:
            futs = {ex.submit(_run_notebook, str(f), a.update_notebooks): f.name for f in order}
            for f in as_completed(futs):
                try: f.result()
                except Exception as e:
                    failed.append(futs[f])
                    print(f'{futs[f]}: FAILED: {type(e).__name__}: {e}', file=sys.stderr); continue
                print(f'{futs[f]}: executed ({time.perf_counter() - t:.0f} s since the chapters started)')
        if failed: raise RuntimeError(f"chapters failed: {failed}; run them one by one to see the traceback")
        # last: its results table reads the Table 1 that chapter 15 writes
        if (nbs/'index.ipynb').exists():
            _run_notebook(str(nbs/'index.ipynb'), a.update_notebooks)
            print('index.ipynb: executed' + ('; run `python tools/make_readme.py` to refresh README.md'
                                             if a.update_notebooks else ''))
    print(f'reproduce finished in {time.perf_counter() - t0:.0f} s; outputs in {out}')

def _recommend_command(a) -> None:
    "carma-nb recommend: serve the file; print one line of counts, and one about refused rows (stderr)."
    from carma_nb.fitting import is_world_model, recommend_world_file          # chapter 18's
    if (world := is_world_model(a.model)) and a.scm:
        raise ValueError(f"{a.model} is a model of a world from data, which knows its world: leave out --scm")
    for m in a.imports: import_user_module(m)            # (a module registering the SCM of the model)
    if a.scm: _known_scm(a.scm)
    r = (recommend_world_file(a.model, a.input, a.output, a.idle_tol, a.strict) if world else
         recommend_file(a.model, a.input, a.output, a.scm, a.idle_tol, a.strict))
    print(f"{r.rows} applicants: " + ', '.join(f'{v} {k}' for k, v in r.counts.items())
          + f"; {r.seconds:.2f} s ({r.rows / max(r.seconds, 1e-9):,.0f} rows/s) → {a.output}")
    if r.counts['refused']:
        print(f"carma-nb recommend: warning: {r.refused_line()}; they get no "
              "targets, the status column says why, and --strict makes this an error", file=sys.stderr)

def main(argv: list[str] | None = None) -> int:
    "The `carma-nb` command."
    a = _parser().parse_args(argv)
    from carma_nb.fitting import fit_command                        # chapter 18's
    try:
        if a.command == 'tune': _known_scm(a.scm, a.imports)
        if a.command == 'reproduce': _reproduce(a)
        elif a.command == 'recommend': _recommend_command(a)
        elif a.command == 'fit': fit_command(a)
        elif a.command == 'tune':
            best = (tune_on_ray(a.scm, a.workers, a.trials, a.storage, a.profile, a.address)
                    if a.executor == 'ray' else
                    tune_carma(a.scm, a.trials, a.storage, profile=a.profile, seed=a.seed))
            print(json.dumps(best, indent=1))
    except (ValueError, OSError, ImportError, KeyError, RuntimeError) as e:
        print(f'carma-nb {a.command}: error: {e}', file=sys.stderr)
        return 2
    return 0


# %%
#| hide
import nbdev; nbdev.nbdev_export()

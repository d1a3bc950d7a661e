# %%
#| default_exp core

# %% [markdown]
# # Core: profiles, seeds, figures, checkpoints and the model cache
#
# > The plumbing every chapter shares, so that no chapter writes it twice.
#
# A reproduction is only as trustworthy as its bookkeeping. Before we touch a causal model we settle,
# once for every chapter: how much work a run does (**profiles**: one switch, the same code path), where
# randomness comes from (**seeds**, one thread), where results go (**figures and tables**, written
# **atomically**), how a trained model travels (**checkpoints** read with `weights_only=True`, so loading
# never runs code), how it is trained only once (a **model cache** keyed by the full configuration, safe
# when two notebooks want the same model at once), and how bad input is refused.

# %%
#| export
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import re
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

# %%
#| hide
from fastcore.test import test_eq, test_fail, test_close, test_ne


# %% [markdown]
# ## Profiles
#
# A `Profile` is a frozen record of the knobs that make a run expensive. `paper` holds the paper's
# settings (classifier 500 epochs, chapter 3; flow 1000, chapter 4; VACA 300, chapter 11; CARMA's
# per-SCM epochs of the paper's Table 5, chapter 7; 10 seeds). `quick` shrinks what is slow so the
# course runs in minutes under test, but keeps the classifier's 500 epochs (in seconds; at 60, loan's
# is 78 % accurate instead of 90 %, chapter 3: another decision-maker). The active profile is the
# argument, else `$CARMA_PROFILE`, else `quick` under `nbdev_test` (it sets `IN_TEST`), else `paper`.

# %%
#| export
@dataclass(frozen=True)
class Profile:
    "How much work one run does; `quick` and `paper` share every code path."
    name: str                 # 'quick' or 'paper'
    seeds: int                # seeds per (SCM, method) for CARMA and the baselines
    clf_epochs: int           # downstream classifier epochs (paper: 500)
    flow_epochs: int          # causal normalizing flow epochs (paper: 1000)
    vaca_epochs: int          # VACA epochs (paper: 300)
    carma_epoch_frac: float   # fraction of each SCM's CARMA epochs (paper Table 5; paper: 1.0)
    oracle_people: int | None # test people the oracle solves per SCM (None: all of them)

PROFILES: dict[str, Profile] = {
    'quick': Profile('quick', seeds=2, clf_epochs=500, flow_epochs=120, vaca_epochs=30,
                     carma_epoch_frac=0.05, oracle_people=200),
    'paper': Profile('paper', seeds=10, clf_epochs=500, flow_epochs=1000, vaca_epochs=300,
                     carma_epoch_frac=1.0, oracle_people=None),
}


# %%
#| export
def get_profile(profile: str | Profile | None = None, # a name, a `Profile`, or None for the active one
               ) -> Profile:
    "The `Profile` to use: the argument, else `$CARMA_PROFILE`, else quick under test and paper otherwise."
    if isinstance(profile, Profile): return profile
    if profile is None:
        profile = os.environ.get('CARMA_PROFILE') or ('quick' if os.environ.get('IN_TEST') else 'paper')
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)} "
                         "(argument `profile=` or environment variable CARMA_PROFILE)")
    return PROFILES[profile]


# %%
test_eq(get_profile('paper').flow_epochs, 1000)
test_fail(lambda: get_profile('fast'), contains="choose one of ['paper', 'quick']")
get_profile()


# %% [markdown]
# ## Seeds
#
# Three generators matter here: Python's, NumPy's and torch's. `seed_everything` sets all three, and
# returns a `torch.Generator` for code that prefers to carry its randomness explicitly (as the
# data chapter does with NumPy generators).

# %%
#| export
def seed_everything(seed: int, # a non-negative integer
                   ) -> torch.Generator:
    "Seed Python, NumPy and torch; return a torch generator seeded with `seed` too."
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed)); np.random.seed(int(seed) % 2**32); torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


# %%
seed_everything(3); a = torch.rand(3)
seed_everything(3); test_eq(torch.rand(3), a)
test_fail(lambda: seed_everything(-1), contains='non-negative integer')


# %% [markdown]
# A seed is not the whole story. The number of threads torch splits a computation over changes the
# order of its floating-point sums, and so the last digits of every gradient step: the same classifier
# trained on one thread and on two drifts apart until a few people sit on different sides of its
# decision boundary. So every trainer runs on **one thread**, and a model depends only on its
# configuration (the flow, with large batches, pays about 10 s at the paper's settings:
# `benchmarks/RESULTS.md`). `one_thread` is also a decorator, and restores the count after an error.

# %%
#| export
@contextlib.contextmanager
def one_thread():
    "Run the block (or, as a decorator, the function) on one torch thread; restore the caller's count after."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try: yield
    finally: torch.set_num_threads(n)


# %%
n0 = torch.get_num_threads()
with one_thread(): test_eq(torch.get_num_threads(), 1)
test_eq(torch.get_num_threads(), n0)                      # the caller's count is restored


# %% [markdown]
# ## Progress bars
#
# Long loops (training epochs, the oracle's chunks) show a `tqdm` bar; `CARMA_QUIET=1` silences all.

# %%
#| export
def progress(iterable=None, # what to iterate over
             desc: str = '',  # the bar's label
             total: int | None = None, # length, when `iterable` has none
             disable: bool | None = None, # force the bar off (True) or on (False); None: follow CARMA_QUIET
             **kwargs):
    "A `tqdm.auto` progress bar that `CARMA_QUIET=1` silences globally."
    if disable is None: disable = os.environ.get('CARMA_QUIET', '0') not in ('', '0')
    return tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, **kwargs)


# %%
test_eq(sum(progress(range(5), disable=True)), 10)


# %% [markdown]
# ## Where things go
#
# Figures, tables and the model cache are found relative to the project: `$CARMA_HOME` if set, else the
# nearest folder above the working directory that holds the project's `settings.ini` (a chapter run from
# `nbs/` writes to the repository's `figures/`), else the working directory (a `pip install`ed library).
# `CARMA_FIGURE_DIR` and `CARMA_CACHE` redirect the figures and the cache (`tests/test_core.py`).

# %%
#| export
def project_root() -> Path:
    "The folder results are written under: `$CARMA_HOME`, else the carma_nb checkout above cwd, else cwd."
    if os.environ.get('CARMA_HOME'): return Path(os.environ['CARMA_HOME']).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        ini = d/'settings.ini'
        if ini.exists() and 'lib_name = carma_nb' in ini.read_text(encoding='utf-8'): return d
    return here

def figure_dir(profile: str | Profile | None = None) -> Path:
    "`$CARMA_FIGURE_DIR` if set; else `figures/` (paper profile) or the git-ignored `figures/_quick/`."
    if os.environ.get('CARMA_FIGURE_DIR'): return Path(os.environ['CARMA_FIGURE_DIR'])
    p = get_profile(profile)
    return project_root()/'figures' if p.name == 'paper' else project_root()/'figures'/'_quick'

def cache_dir() -> Path:
    "Where trained models are cached: `$CARMA_CACHE`, else `.carma_cache/` under the project root."
    return Path(os.environ['CARMA_CACHE']) if os.environ.get('CARMA_CACHE') else project_root()/'.carma_cache'


# %%
if not os.environ.get('CARMA_FIGURE_DIR'):
    test_eq(figure_dir('quick'), figure_dir('paper')/'_quick')


# %% [markdown]
# ## Atomic writes
#
# A file is either absent or complete: we write to a temporary file in the same folder and `os.replace`
# it into place (atomic on POSIX). An interrupted run, or a second process reading at the wrong moment,
# never sees half a file. It gets the permissions a plain `open` would give: the old file's, else the umask's.

# %%
#| export
@contextlib.contextmanager
def atomic_write(path: str | Path, # the final file
                 mode: str = 'wb', # 'wb' for bytes, 'w' for text
                ):
    "Context manager yielding a temporary file that replaces `path` only if the block succeeds."
    path = Path(path)
    if mode not in ('wb', 'w'): raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode, **({'encoding': 'utf-8'} if mode == 'w' else {})) as f:
            yield f
            f.flush(); os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError): os.unlink(tmp)
        raise

def _umask() -> int:
    old = os.umask(0o022); os.umask(old); return old


# %%
with tempfile.TemporaryDirectory() as d:
    target = Path(d)/'out.txt'
    with atomic_write(target, 'w') as f: f.write('complete')
    def _interrupted():
        with atomic_write(target, 'w') as f: f.write('half'); raise RuntimeError('crash mid-write')
    test_fail(_interrupted, contains='crash mid-write')
    test_eq(target.read_text(), 'complete')   # the old file survives the interrupted write
    test_eq(sorted(p.name for p in Path(d).iterdir()), ['out.txt'])  # and no temp file is left
    test_eq(target.stat().st_mode & 0o777, 0o666 & ~_umask())          # a plain open's permissions


# %% [markdown]
# ## Figures and tables
#
# `save_figure` and `save_table` are the only way chapters write results (quick profile: to
# `figures/_quick/`); `save_table` writes a CSV (for machines) and a Markdown table (for people).

# %%
#| export
def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in '/\\') or name.startswith('.'):
        raise ValueError(f"name must be a plain file stem such as 'fig6_graphs', got {name!r}")
    return name

def save_figure(fig, # a matplotlib figure
                name: str, # file stem, e.g. 'fig6_graphs'
                profile: str | Profile | None = None, # decides figures/ vs figures/_quick/
                dpi: int = 150) -> Path:
    "Atomically save `fig` as `<figure_dir>/<name>.png` and return the path."
    path = figure_dir(profile)/f'{_check_name(name)}.png'
    with atomic_write(path) as f: fig.savefig(f, format='png', dpi=dpi, bbox_inches='tight',
                                              metadata={'Software': None})
    return path

def markdown_table(df, floatfmt: str = '.4g') -> str:
    "A GitHub-flavoured Markdown table of a DataFrame (index included when it is named)."
    df = df.reset_index() if any(n is not None for n in df.index.names) else df
    fmt = lambda v: format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)
    rows = [[str(c) for c in df.columns]] + [[fmt(v) for v in r] for r in df.itertuples(index=False)]
    lines = ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join([lines[0], '|' + '---|'*len(df.columns), *lines[1:]]) + '\n'

def save_table(df, # a pandas DataFrame
               name: str, # file stem, e.g. 'table1'
               profile: str | Profile | None = None) -> Path:
    "Atomically save `df` as `<name>.csv` and `<name>.md`; return the CSV path."
    d = figure_dir(profile); _check_name(name)
    with atomic_write(d/f'{name}.csv', 'w') as f:
        df.to_csv(f, index=any(n is not None for n in df.index.names))
    with atomic_write(d/f'{name}.md', 'w') as f: f.write(markdown_table(df))
    return d/f'{name}.csv'


# %%
import pandas as pd
print(markdown_table(pd.DataFrame({'scm': ['loan'], 'cost': [6.25]})))
test_fail(lambda: save_figure(None, '../escape'), contains='plain file stem')

# %% [markdown]
# ## Checkpoints
#
# A trained model travels as one file: its weights (a `state_dict`), the JSON-able configuration that
# rebuilds it (including which SCM it belongs to), and the scaler of the data it was trained on.
# Everything inside is a tensor, a string or a number, which is exactly what
# `torch.load(path, weights_only=True)` accepts, so a checkpoint can never smuggle in code.

# %%
#| export
CKPT_FORMAT = 'carma_nb-checkpoint-1'

@dataclass(frozen=True)
class Checkpoint:
    "A loaded checkpoint: weights, the config that rebuilds the model, and the data scaler."
    state_dict: dict   # name -> tensor
    config: dict       # JSON-able configuration
    scaler: dict | None  # name -> tensor (see `carma_nb.data.StandardScaler.state_dict`)
    path: Path | None = None
    extras: dict | None = None  # name -> tensor: anything else worth keeping (e.g. training curves)

def _normalise_config(config: Mapping) -> dict:
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict of JSON-able values, got {type(config).__name__}")
    try: return json.loads(json.dumps(dict(config), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise TypeError("config must hold only JSON-able values "
                        f"(str, int, float, bool, None, lists, dicts): {e}") from None

def _tensor_dict(d, what: str) -> dict | None:
    if d is None: return None
    if not isinstance(d, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in d.items()):
        raise TypeError(f"{what} must be a dict mapping names to tensors")
    return {k: v.detach().cpu().clone() for k, v in d.items()}

def save_checkpoint(path: str | Path, # destination file (parents are created)
                    state_dict: Mapping[str, torch.Tensor], # model weights
                    config: Mapping, # JSON-able config that rebuilds the model
                    scaler: Mapping[str, torch.Tensor] | None = None, # the data scaler's tensors
                    extras: Mapping[str, torch.Tensor] | None = None, # other tensors (training curves)
                   ) -> Path:
    "Atomically write weights, config, scaler (and extra tensors) to `path`."
    payload = {'format': CKPT_FORMAT, 'config': json.dumps(_normalise_config(config), sort_keys=True),
               'state_dict': _tensor_dict(state_dict, 'state_dict'), 'scaler': _tensor_dict(scaler, 'scaler'),
               'extras': _tensor_dict(extras, 'extras')}
    with atomic_write(path) as f: torch.save(payload, f)
    return Path(path)


# %% [markdown]
# Loading checks that the file exists, that it is one of ours, and that it matches what the caller
# expects: `expect={'scm': 'loan'}` turns "I loaded the triangle model by mistake" into an error.

# %%
#| export
def load_checkpoint(path: str | Path, # a file written by `save_checkpoint`
                    expect: Mapping | None = None, # config entries that must match, e.g. {'scm': 'loan'}
                   ) -> Checkpoint:
    "Load a checkpoint safely (`weights_only=True`) and check its config against `expect`."
    path = Path(path)
    if not path.is_file(): raise FileNotFoundError(f"no checkpoint at {path}")
    try: payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable carma_nb checkpoint "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(payload, dict) or payload.get('format') != CKPT_FORMAT:
        raise ValueError(f"{path} is not a carma_nb checkpoint (expected format {CKPT_FORMAT!r})")
    config = json.loads(payload['config'])
    for k, v in _normalise_config(expect or {}).items():
        if config.get(k) != v:
            raise ValueError(f"checkpoint {path.name} has {k}={config.get(k)!r} but {k}={v!r} was requested; "
                             f"load a checkpoint trained for {k}={v!r} or train one")
    return Checkpoint(payload['state_dict'], config, payload['scaler'], path, payload.get('extras'))


# %%
with tempfile.TemporaryDirectory() as d:
    lin = torch.nn.Linear(3, 1)
    p = save_checkpoint(Path(d)/'m.pt', lin.state_dict(), {'scm': 'loan', 'hidden': [32, 32]},
                        scaler={'mean': torch.zeros(3), 'std': torch.ones(3)})
    ck = load_checkpoint(p, expect={'scm': 'loan'})
    test_eq(ck.state_dict['weight'], lin.weight.detach())
    test_fail(lambda: load_checkpoint(p, expect={'scm': 'triangle-lin'}), contains="has scm='loan'")


# %% [markdown]
# A checkpoint that loads is not yet a model that works: `load_state_dict(strict=False)` keeps the random
# initial value of a missing layer, and a NaN weight makes every output NaN. So every model of the
# package is filled by `load_weights`, which refuses the file unless each tensor the model needs is there,
# with its shape, dtype and finite values, and nothing unknown is left over (here: a missing tensor).

# %%
#| export
def load_weights(module: torch.nn.Module, # the freshly built model to fill
                 state: Mapping[str, torch.Tensor], # the saved tensors (a checkpoint's state_dict)
                 source: str | Path, # named in every error: the file, or what the tensors come from
                 skip: tuple[str, ...] = (), # prefixes of `module`'s tensors filled elsewhere (e.g. 'clf.')
                ) -> torch.nn.Module:
    "Fill `module` from `state` only if every tensor it needs is present, of its shape and dtype, and finite."
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: the weights are not a mapping of names to tensors; the file is damaged")
    need = {k: v for k, v in module.state_dict().items() if not k.startswith(tuple(skip))}
    missing, unknown = sorted(set(need) - set(state)), sorted(set(state) - set(need))
    if missing or unknown:
        listed = lambda names: f'{names[:4]}' + (' …' if len(names) > 4 else '')
        raise ValueError(f"{source}: " + '; '.join(f'{what} tensors {listed(names)}' for what, names in
                                                 (('missing', missing), ('unexpected', unknown)) if names)
                         + ". The file is damaged or was written for another model or version; "
                           "train or save it again")
    for k, v in need.items():
        t = state[k]
        if t.shape != v.shape or t.dtype != v.dtype:
            raise ValueError(f"{source}: tensor {k!r} is {t.dtype} {tuple(t.shape)} but the model needs "
                             f"{v.dtype} {tuple(v.shape)}; the file was written for another architecture")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{source}: tensor {k!r} holds NaN or inf ({int((~torch.isfinite(t)).sum())} "
                             "entries); the model is broken: train it again")
    module.load_state_dict({k: state[k] for k in need}, strict=not skip)
    return module


# %%
lin, good = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2).state_dict()
test_eq(load_weights(lin, good, "m.pt").weight.detach(), good["weight"])
test_fail(lambda: load_weights(lin, {'weight': good['weight']}, 'm.pt'),
          contains="m.pt: missing tensors ['bias']")


# %% [markdown]
# ## The model cache
#
# Training is the expensive step, and several chapters need the same model (the loan flow is used by
# the flow, CARMA, preference and experiment chapters). `cached_checkpoint(kind, config, train)` looks
# the model up by a hash of its **full** configuration (SCM, hyperparameters, seed, profile numbers):
# change anything and it is a different model.
#
# Two notebooks run in parallel may ask for the same model at once. An exclusive `fcntl.flock` on a
# per-model lock file makes the second wait while the first trains, then read the finished file. "Is the
# model there?" must be asked again *after* taking the lock; else both train it, one after the other.

# %%
#| export
def config_key(config: Mapping) -> str:
    "A short, stable hash of a JSON-able config (key order does not matter)."
    blob = json.dumps(_normalise_config(config), sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]

@contextlib.contextmanager
def file_lock(path: str | Path):
    "Hold an exclusive advisory lock on `path` (created if needed) for the duration of the block."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try: yield
        finally: fcntl.flock(f, fcntl.LOCK_UN)

@contextlib.contextmanager
def file_locks(paths: list): # lock files, e.g. one per model of a stack
    "Hold exclusive locks on several files, taken in one fixed (sorted) order: overlaps never deadlock."
    if isinstance(paths, (str, Path)):
        raise TypeError("file_locks takes a list of paths; for one path, use file_lock")
    with contextlib.ExitStack() as stack:
        for p in sorted({Path(p).resolve() for p in paths}): stack.enter_context(file_lock(p))
        yield


# %%
test_eq(config_key({'a': 1, 'b': [1, 2]}), config_key({'b': [1, 2], 'a': 1}))
test_ne(config_key({'a': 1}), config_key({'a': 2}))


# %% [markdown]
# ### Orphaned temporary files
#
# `atomic_write` deletes its temporary file when the block fails, but a process killed outright
# (`kill -9`, a worker dying with its parent, chapter 14) leaves its `.<name>.XXXXXXXX.tmp` behind. Whoever
# merely sees such a file may not delete it: its writer may still be writing. But every writer of a cached
# model holds that model's lock, so whoever holds the lock knows every temporary file of the model is an
# orphan, and removes them. The match is exact (`.<name>.`, mkstemp's 8 random characters, `.tmp`):
# another file's temporary file is never touched (`tests/test_core.py` kills a writer mid-write).

# %%
#| export
def _temp_files(path: Path) -> list[Path]:
    "The temporary files `atomic_write` makes for `path`: `.<name>.`, mkstemp's 8 random characters, `.tmp`."
    pattern = re.compile(rf'\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp')
    if not path.parent.is_dir(): return []
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))

def remove_orphaned_temps(path: str | Path, # a file whose writers all hold one lock (a cached model)
                         ) -> int:
    "Delete the temporary files that killed `atomic_write`s of `path` left; call it under its writers' lock."
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or a Path, not {type(path).__name__}")
    n = 0
    for p in _temp_files(Path(path)):
        with contextlib.suppress(FileNotFoundError): p.unlink(); n += 1
    return n


# %%
#| export
#: Part of every cached model's config: bump it whenever training code changes, so no stale model is reused.
TRAINER_VERSION = 3

def _check_trained(out):
    if not (isinstance(out, tuple) and len(out) in (2, 3)):
        raise TypeError("train must return (state_dict, scaler_state_or_None) or (state_dict, scaler, "
                        f"extras) for each model, got {type(out).__name__}")

def cached_checkpoints(kind: str, # model family, e.g. 'carma' (a sub-folder of the cache)
                       configs: list, # full JSON-able training configurations, one per model
                       train_missing: Callable[[list], list], # (indices) → one trained tuple per index
                       cache: str | Path | None = None, # cache folder; default `cache_dir()`
                       refresh: bool = False, # retrain even the cached ones
                      ) -> list[Checkpoint]:
    "Every config's checkpoint; the missing ones trained in one `train_missing` call, under their locks."
    _check_name(kind)
    if isinstance(configs, Mapping):
        raise TypeError("configs must be a list of configs; for a single one, use cached_checkpoint")
    configs = list(configs)
    paths = [Path(cache or cache_dir())/kind/f'{config_key(c)}.pt' for c in configs]
    if not paths: raise ValueError("configs is empty: give at least one configuration")
    if len(set(paths)) < len(paths): raise ValueError("configs must be distinct: two describe the same model")
    need = [i for i, p in enumerate(paths) if refresh or not p.exists()]
    if need:
        with file_locks([paths[i].with_suffix('.lock') for i in need]):
            for i in need: remove_orphaned_temps(paths[i])   # safe: every writer of paths[i] holds its lock
            todo = [i for i in need if refresh or not paths[i].exists()]   # asked again, under the locks
            outs = list(train_missing(todo)) if todo else []
            if len(outs) != len(todo):
                raise TypeError(f"train_missing returned {len(outs)} models for {len(todo)} configs")
            for out in outs: _check_trained(out)
            for i, out in zip(todo, outs): save_checkpoint(paths[i], out[0], configs[i], *out[1:])
    return [load_checkpoint(p, expect=c) for p, c in zip(paths, configs)]

def cached_checkpoint(kind: str, # model family, e.g. 'flow' (a sub-folder of the cache)
                      config: Mapping, # the full JSON-able training configuration
                      train: Callable[[], tuple], # trains; → (state_dict, scaler_state or None[, extras])
                      cache: str | Path | None = None, # cache folder; default `cache_dir()`
                      refresh: bool = False, # retrain even if a cached model exists
                     ) -> Checkpoint:
    "Return the cached checkpoint for `config`, calling `train()` (once, under a lock) if it is missing."
    return cached_checkpoints(kind, [config], lambda todo: [train()], cache, refresh)[0]

def cached_stack(kind: str, # model-cache folder
                 cfgs: list[dict], # one full configuration per seed
                 # fit_missing(indices) → [(state_dict, scaler, extras)] for those configs, trained together
                 fit_missing,
                 cache: bool = True) -> list[Checkpoint]:
    ("One checkpoint per config: the cached ones loaded, the missing ones trained at once under their locks "
     "(`cached_checkpoints`).")
    if cache: return cached_checkpoints(kind, cfgs, fit_missing)
    return [Checkpoint(f[0], c, None, None, f[2]) for c, f in zip(cfgs, fit_missing(list(range(len(cfgs)))))]


# %% [markdown]
# A *stack* of models trained together (chapter 8 trains all the seeds of CARMA in one go) takes the
# locks of all its missing models before asking again which are missing. Two stacks that share models
# would deadlock if each took its locks in its own order; `file_locks` takes them sorted by path, so the
# stack that gets the first shared lock gets them all. Below, two threads ask at once for overlapping
# stacks in different orders: every model is trained once, and both get the same weights.

# %%
import threading, time
with tempfile.TemporaryDirectory() as d:
    trained, got = [], {}
    def fetch(seeds):
        def train_missing(todo):
            trained.extend(seeds[i] for i in todo); time.sleep(0.2)
            return [(torch.nn.Linear(2, 1).state_dict(), None) for _ in todo]
        got[seeds] = cached_checkpoints('demo', [{'seed': s} for s in seeds], train_missing, cache=d)
    threads = [threading.Thread(target=fetch, args=(s,)) for s in [(0, 1), (2, 1, 0)]]
    for t in threads: t.start()
    for t in threads: t.join()
    test_eq(sorted(trained), [0, 1, 2])                      # each model trained once, nobody deadlocked
    test_eq(got[0, 1][1].state_dict['weight'], got[2, 1, 0][1].state_dict['weight'])   # seed 1, shared


# %% [markdown]
# ## Validating feature matrices
#
# Every public function of the library that takes people's features runs them through one check, so
# the errors read the same everywhere: a 1-D row is promoted to one person, lists and NumPy arrays
# become tensors, and a wrong column count, a non-numeric dtype, NaN or inf are refused with a message
# that names the problem (`tests/test_core.py` tries each).

# %%
#| export
def as_features(x, # people's features: (n, D) or a single row (D,); tensor, array or nested list
                n_features: int, # D, the number of features expected
                name: str = 'x', # how the argument is called in error messages
                feature_names: tuple | list | None = None, # listed in the error for a wrong column count
                dtype: torch.dtype | None = None, # this float dtype (default: keep float, else float32)
               ) -> torch.Tensor:
    "Check and convert a feature matrix to a 2-D float tensor with `n_features` columns and finite values."
    if not isinstance(x, torch.Tensor):
        try: x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be numeric (tensor, array or list): {e}") from None
        x = x.to(dtype or torch.get_default_dtype())
    if x.dtype == torch.bool or not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    if not x.is_floating_point() or (dtype is not None and x.dtype != dtype):
        x = x.to(dtype or torch.get_default_dtype())
    if x.ndim == 1: x = x.unsqueeze(0)
    if x.ndim != 2: raise ValueError(f"{name} must be 2-D (people × features), got shape {tuple(x.shape)}")
    if x.shape[1] != n_features:
        names = f" ({', '.join(map(str, feature_names))})" if feature_names else ''
        raise ValueError(f"{name} has {x.shape[1]} columns but {n_features} features are expected{names}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]}); "
                         "impute or drop those rows first")
    return x


# %%
test_eq(as_features([1., 2.], 2).shape, (1, 2))
test_fail(lambda: as_features(torch.zeros(3, 4), 2, feature_names=['a', 'b']),
          contains='4 columns but 2 features are expected (a, b)')
test_fail(lambda: as_features(torch.tensor([[0., float('nan')]]), 2),
          contains='NaN or inf (first at row 0, column 1)')


# %% [markdown]
# ## Checking hyperparameters
#
# A trainer should refuse a bad setting before it trains, not fail a minute later or train something
# else than what was asked (`epochs=2.5` run as 2, `hidden=[0]` an empty layer). Every trainer checks each
# argument with one of these: counts are **whole numbers** (an int, or a float without a fraction, as
# Optuna or JSON may give), rates and scales **finite positive numbers**, seeds whole numbers **≥ 0**,
# layer widths whole numbers ≥ 1; strings and booleans are never numbers (`tests/test_core.py`). A recourse
# model's trainer (chapters 8 and 12) takes its settings as one `TrainOptions` (or a dict of its fields),
# checked by `as_options`: an unknown setting is named, with the known ones.

# %%
#| export
def _real(v) -> bool: return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))

def check_whole(value, name: str, minimum: int = 1) -> int:
    "`value` as an int if it is a whole number ≥ `minimum` (an int, or a float without a fraction)."
    if not (_real(value) and math.isfinite(value) and float(value) == int(value) and value >= minimum):
        raise ValueError(f"{name} must be a whole number ≥ {minimum}, got {value!r}")
    return int(value)

def check_positive(value, name: str, zero: bool = False) -> float:
    "`value` as a float if it is finite and > 0 (≥ 0 with `zero`); else a ValueError."
    if not (_real(value) and math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise ValueError(f"{name} must be a finite number {'≥' if zero else '>'} 0, got {value!r}")
    return float(value)

def check_seed(value, name: str = 'seed') -> int:
    "A random seed: a whole number ≥ 0."
    return check_whole(value, name, 0)

def check_seeds(value, name: str = 'seeds') -> list[int]:
    "A non-empty list of distinct seeds, each a whole number ≥ 0."
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        raise ValueError(f"{name} must be a list of seeds such as [0, 1, 2], got {value!r}")
    seeds = [check_seed(s, f'every seed in {name}') for s in value]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must be distinct and non-empty, got {seeds}")
    return seeds

def check_widths(value, name: str, empty: bool = False) -> tuple[int, ...]:
    "Layer widths as a tuple of whole numbers ≥ 1 (possibly empty with `empty`); else a ValueError."
    if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
        raise ValueError(f"{name} must be a list of layer widths such as [32, 32], got {value!r}")
    widths = tuple(check_whole(w, f'every width in {name}') for w in value)
    if not widths and not empty: raise ValueError(f"{name} needs at least one layer width, got {value!r}")
    return widths

@dataclass(frozen=True)
class TrainOptions:
    "How a recourse model is trained and kept."
    hparams: dict | None = None            # overrides of the method's hyperparameters
    profile: str | Profile | None = None   # scales the epochs (`get_profile`)
    cache: bool = True                     # load and store the models in the model cache
    verbose: bool = True                   # progress bars

def as_options(options, kind: type = TrainOptions):
    "`options` as a `kind`: itself, a dict of its fields (a trainer's keywords), or None (the defaults)."
    if options is None or isinstance(options, dict):
        known = [f.name for f in fields(kind)]
        if unknown := sorted(set(options or {}) - set(known)):
            raise TypeError(f"unknown option(s) {unknown}; the options are {known} (hyperparameters go in "
                            "hparams, e.g. hparams={'lr': 1e-3})")
        options = kind(**(options or {}))
    if type(options) is not kind:
        raise TypeError(f"options must be a {kind.__name__}, e.g. {kind.__name__}(profile='quick'), or a "
                        f"dict of its fields; got {type(options).__name__}")
    if not isinstance(options.hparams, (dict, type(None))):
        raise TypeError(f"hparams must be a dict of overrides, e.g. {{'epochs': 3}}; got {options.hparams!r}")
    return options


# %%
test_eq(check_whole(3.0, 'epochs'), 3); test_eq(check_seeds(range(3)), [0, 1, 2])
test_fail(lambda: check_whole(2.5, 'epochs'), contains='epochs must be a whole number ≥ 1')
test_fail(lambda: check_positive('1e-3', 'lr'), contains='lr must be a finite number > 0')
test_fail(lambda: check_widths([0], 'mask_hidden'),
          contains='every width in mask_hidden must be a whole number ≥ 1')
test_eq(as_options({'profile': 'quick'}), TrainOptions(profile='quick'))
test_fail(lambda: as_options({'epochs': 3}), contains="unknown option(s) ['epochs']")
test_fail(lambda: as_options('improved'), contains='options must be a TrainOptions')
test_fail(lambda: as_options(TrainOptions(hparams=3)), contains='hparams must be a dict')

# %%
#| hide
import nbdev; nbdev.nbdev_export()

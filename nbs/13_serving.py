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
#| default_exp serving

# %% [markdown]
# # Serving applicants
#
# > A file of applicants in, a file of recommendations out: every row served, or refused with its reason.
#
# Chapter 7 built a model that answers a batch of people in one forward pass, and knows its domain —
# where its training data lets it be trusted. A bank or a hiring platform does not call a Python method,
# though: it hands a service a file. This chapter is that service, `recommend_file`, which the command
# `carma-nb recommend` (chapter 14) wraps:
#
# ```sh
# carma-nb recommend --scm loan --model carma_loan.pt --input applicants.csv --output actions.csv [--strict]
# ```

# %%
#| export
from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from carma_nb.carma import CARMA, load_carma
from carma_nb.core import atomic_write, check_positive
from carma_nb.recourse import DOMAIN_MARGIN, SERVED, Recommendation, outside_domain, recourse_status
from carma_nb.scm import get_scm

# %%
#| hide
from fastcore.test import test_eq, test_fail
import tempfile
from carma_nb.carma import save_carma
from carma_nb.flow import fit_flow
from carma_nb.oracle import oracle_reference
from carma_nb.recourse import describe_domain
from carma_nb.training import train_carma

# %% [markdown]
# ## The deployment path
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
# ## A file of applicants
#
# A CARMA model of loan (trained at the quick profile: the serving path does not depend on the profile),
# saved with `save_carma` (chapter 7), serves 1 000 fresh applicants of the SCM from a CSV file; dropping
# idle acts only removes acts; a wrong SCM, a bad setting or a bad file is refused before anything is
# written.

# %%
ref = oracle_reference('loan', 'quick')
carma = train_carma('loan', ref.clf, fit_flow('loan', ref.pools.causal, 'quick', verbose=False),
                    ref.pools.recourse, profile='quick', verbose=False)
loan = get_scm('loan')
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    save_carma(carma, d/'carma_loan.pt')
    pd.DataFrame(ref.pools.recourse.test.x[:1000].numpy(), columns=loan.names).to_csv(d/'people.csv',
                                                                                      index=False)
    run = lambda inp, out, **kw: recommend_file(d/'carma_loan.pt', d/inp, d/out, 'loan', **kw)
    actions = run('people.csv', 'actions.csv')
    test_eq(len(actions), 1000); test_eq(len(pd.read_csv(d/'actions.csv')), 1000)
    acts = [c for c in actions if c.startswith('act_')]
    test_eq(actions.loc[actions['status'] != 'served', acts].to_numpy().any(), False)   # targets: served only
    assert set(actions['status']) <= {'served', 'already accepted', 'no valid action'}
    fewer = run('people.csv', 'idle.csv', idle_tol=0.05)
    # dropping idle acts only removes acts
    assert not (fewer[acts].to_numpy() & ~actions[acts].to_numpy()).any()
    test_fail(lambda: run('people.csv', 'x.csv', idle_tol=-1), contains='idle_tol must be')
    test_fail(lambda: recommend_file(d/'carma_loan.pt', d/'people.csv', d/'x.csv', 'chain-lin'),
              contains="but scm='chain-lin' was requested")
    assert not (d/'x.csv').exists()
    pd.DataFrame({'age': [30]}).to_csv(d/'bad.csv', index=False)
    test_fail(lambda: read_applicants(d/'bad.csv', 'loan'), contains="missing ['gender', 'education'")
    pd.read_csv(d/'people.csv').assign(colour=1).to_csv(d/'extra.csv', index=False)
    test_fail(lambda: read_applicants(d/'extra.csv', 'loan'), contains="unknown ['colour']")
    df = pd.read_csv(d/'people.csv').astype(object); df.loc[3, 'income'] = 'lots'
    df.to_csv(d/'nan.csv', index=False)
    test_fail(lambda: read_applicants(d/'nan.csv', 'loan'),
              contains="column 'income' has a non-numeric value 'lots' (data row 4)")
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
# −1000, 16777217 or $10^{30}$: six rows refused, the last two answered. The output repeats every value
# exactly as it was written, and `--strict` makes any refusal an error that writes nothing.

# %%
import io
rows = ['7,30,0,1,1,1,1', '0.5,30,0,1,1,1,1', '1,30,0.7,1,1,1,1', '1,-1000,0,1,1,1,1', '1,1e30,0,1,1,1,1',
        '1,16777217,0,1,1,1,1', '0,12,0.1,2,3,-2,-3', '1,5,0,0,0,3,4']
odd = pd.read_csv(io.StringIO('\n'.join([','.join(loan.names), *rows])), dtype=str)
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    save_carma(carma, d/'carma_loan.pt'); odd.to_csv(d/'odd.csv', index=False)
    recommend_file(d/'carma_loan.pt', d/'odd.csv', d/'odd_out.csv', 'loan')
    served = pd.read_csv(d/'odd_out.csv', dtype=str, keep_default_na=False)
    test_fail(lambda: recommend_file(d/'carma_loan.pt', d/'odd.csv', d/'strict.csv', 'loan', strict=True),
              contains='--strict: 6 of 8 applicants refused')
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


# %% [markdown]
# `carma-nb recommend` (chapter 14) is this function behind a command line: it prints one line of counts,
# warns about refused rows on the standard error, and exits with status 2 and a message, never a
# traceback, when it cannot serve the file (a malformed file, a model of another SCM, a bad `--idle-tol`,
# or `--strict` with a refused row).

# %% [markdown]
# ## Your own SCM on the command line
#
# `carma-nb recommend --import my_world` (chapter 14) serves a model of an SCM registered by the
# user's own module.
#
# Importing the user's module is the one step that runs their code, exactly as `python -c "import
# my_world"` would; it happens only when they name it. A file path is imported under a name of its own
# (once per process, so a second call is a no-op), and every way it can fail says what to give instead
# (`tests/test_cli.py` checks each).

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
test_fail(lambda: import_user_module('no_such_module_xyz'), contains='give a module importable')
test_fail(lambda: _known_scm('toy-world'), contains='add --import MODULE')

# %%
#| hide
import nbdev; nbdev.nbdev_export()

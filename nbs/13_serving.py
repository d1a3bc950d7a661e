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

import codecs
import copy
import csv
import importlib
import importlib.util
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import torch

from carma_nb.carma import CARMA, load_carma
from carma_nb.core import atomic_write, check_positive, progress
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
# The input is a CSV (or Parquet) file with one column per feature, named as in the SCM (any order). The
# output has the applicant's columns, a `status`, whether they were already accepted, the recommended action
# (`act_<feature>`, `<feature>_target`) and the classifier's probability before and after. Each chunk of
# the file is one batched forward pass of the model's own serving program (chapter 7), with its setting for
# idle acts: a model trained with the improved recipe leaves out acts that change nothing (chapter 9),
# the paper's serves every act. `--idle-tol TOL` overrides the model's setting (`0` keeps every act).
#
# A file handed to a service is where things go silently wrong, so each step below refuses what it
# cannot answer, and says where and why.

# %% [markdown]
# **Reading.** A bank's file can hold millions of applicants, more than a service should hold in memory,
# so it is read in chunks of about `CHUNK_BYTES` (1 MiB), each served and written in turn: the memory
# needed does not grow with the file. A CSV file is read as text first and parsed second, so a CSV output
# repeats each value exactly as written (16777217 stays 16777217 and does not come back as float32's
# 1.6777216e+07); a Parquet output holds the features as float64 numbers. Either way the features come
# out in the SCM's order. A file named `*.parquet` (or `*.pq`) is read as Parquet, any other as CSV;
# both are read by pyarrow.
#
# The file must be UTF-8 and comma-separated, with a header naming exactly the SCM's features and one
# value per column in every row. A row with more fields than the header would otherwise be shifted by
# one column and served as somebody else; it is refused, naming the row, like a file that is not UTF-8
# (naming the byte and line), a file whose delimiter looks like `;` or a tab, a header without rows,
# and any value that is not a number (`True` included: write 1 or 0), missing, or infinite. Such an
# error may be found late, after much of the file was served; still nothing is written, because the
# output is atomic (below).

# %%
#| export
CHUNK_BYTES = 1 << 20     # about this much of the input is served at a time (the memory bound)
_NA_TEXT = {'', 'nan', 'na', 'n/a', 'null', 'none'}   # read as a missing value, not as a malformed one

def is_parquet(path: str | Path) -> bool:
    "Whether `path` is read and written as Parquet (`*.parquet`, `*.pq`); any other name is CSV."
    return Path(path).suffix.lower() in ('.parquet', '.pq')

def _check_readable(path) -> Path:
    path, name = Path(path), repr(str(path))
    if not path.exists(): raise FileNotFoundError(f"input file {name} does not exist")
    if path.is_dir(): raise ValueError(f"input {name} is a folder; give a CSV or Parquet file")
    try: path.open('rb').close()
    except OSError as e: raise ValueError(f"cannot read the input file {name}: {e.strerror or e}") from None
    return path

def _utf8_error(path) -> ValueError | None:
    "The first byte of the file that is not UTF-8, with its line, as an error (None if all is UTF-8)."
    decoder, line = codecs.getincrementaldecoder('utf-8')(), 1
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            try: decoder.decode(block)
            except UnicodeDecodeError as e:
                line, byte = line + e.object[:e.start].count(b'\n'), e.object[e.start]
                return ValueError(f"input file {str(path)!r} is not UTF-8 text: byte 0x{byte:02x} on line "
                                  f"{line} ({e.reason}); save it as UTF-8 (a spreadsheet's 'CSV UTF-8')")
            line += block.count(b'\n')
        try: decoder.decode(b'', final=True)
        except UnicodeDecodeError as e:
            return ValueError(f"input file {str(path)!r} is not UTF-8 text: it ends inside a character on "
                              f"line {line} ({e.reason}); save it as UTF-8 (a spreadsheet's 'CSV UTF-8')")
    return None

def _row_lengths_error(path, width: int) -> ValueError | None:
    "The first data row whose number of fields differs from the header's, as an error (None if all agree)."
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader, k = csv.reader(f), 0
        next(reader, [])
        for row in reader:
            if not row: continue                                    # blank lines are skipped, as when parsing
            k += 1
            if len(row) != width:
                n = len(row)
                hint = ('a comma inside a value, or a trailing comma?' if n > width else 'a value left out?')
                if n == 1 and ';' in row[0]: hint = 'the delimiter looks wrong: write commas'
                return ValueError(f"{path}: data row {k} (line {reader.line_num}) has {n} "
                                  f"field{'s' * (n > 1)} but the header has {width} ({hint}); "
                                  "every row needs one value per column")
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

def _csv_header(path) -> list[str]:
    "The CSV file's header, its names stripped; refuses an empty file and one that is not UTF-8."
    with open(path, 'rb') as f: first = f.readline()
    try: text = first.decode('utf-8-sig')
    except UnicodeDecodeError: raise _utf8_error(path) from None
    if not text.strip():
        raise ValueError(f"input file {str(path)!r} is empty; it needs a header of the features")
    try: return [c.strip() for c in next(csv.reader([text]))]
    except csv.Error as e:
        cr = '\r' in text.rstrip('\r\n')
        raise ValueError(f"{path}: cannot read the header ({e})" + (
            "; the lines end in a bare carriage return (an old Mac format): save the file with ordinary "
            "line endings" if cr else ""))


def _csv_batches(path, scm, chunk_bytes: int):
    "The applicants as text, in chunks (RecordBatches, the SCM's column order); errors name row and cause."
    header = _csv_header(path)
    _check_header(path, header, scm)
    names = list(scm.names)
    opts = dict(read_options=pcsv.ReadOptions(block_size=chunk_bytes, column_names=header, skip_rows=1),
                parse_options=pcsv.ParseOptions(newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                    include_columns=names))
    try:
        with pcsv.open_csv(path, **opts) as reader:
            for batch in reader:
                yield batch
    except pa.ArrowInvalid as e:
        raise (_utf8_error(path) or _row_lengths_error(path, len(header))
               or ValueError(f"{path}: not a readable CSV file ({e})")) from None

def _parquet_batches(path, scm, chunk_bytes: int):
    "The applicants of a Parquet file, in chunks with the SCM's column order."
    try: f = pq.ParquetFile(path, pre_buffer=False, buffer_size=chunk_bytes)  # (pre-buffering keeps all)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"input file {str(path)!r} is not a readable Parquet file ({e})") from None
    with f:
        # (pandas stores a DataFrame's index as a column of its own: not a feature, so not refused)
        _check_header(path, [n for n in f.schema_arrow.names if not n.startswith('__index_level_')], scm)
        yield from f.iter_batches(batch_size=max(1, chunk_bytes // (8 * scm.n_features)),
                                  columns=list(scm.names))

def applicant_batches(path: str | Path, # a CSV or Parquet file: the SCM's features, one row per applicant
                      scm, # the SCM (or its name)
                      chunk_bytes: int = CHUNK_BYTES, # about this much of the file per chunk
                     ) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    ("Each chunk of applicants as read (text for CSV) and as float64 (n, D), in the SCM's feature order; "
     "clear errors for bad files.")
    scm, path = get_scm(scm), _check_readable(path)
    batches = (_parquet_batches if is_parquet(path) else _csv_batches)(path, scm, chunk_bytes)
    first = 0
    for batch in batches:
        if batch.num_rows == 0: continue
        x, checked = _parse_batch(batch, path, first)
        # a chunk that needed the slow checks may hold text such as ' 1\r\n': marked, to be quoted on output
        yield (batch.replace_schema_metadata({'carma_checked': '1'}) if checked else batch), x
        first += batch.num_rows
    if first == 0: raise ValueError(f"{path}: has a header but no applicants; add one row per applicant")

def _parse_batch(batch: pa.RecordBatch, path, first_row: int) -> tuple[np.ndarray, bool]:
    ("Float64 values of a chunk: arrow's fast cast, or (for what it refuses) the checks that name the "
     "cell; and whether those slower checks were needed.")
    if bools := [n for n, c in zip(batch.schema.names, batch) if pa.types.is_boolean(c.type)]:
        raise ValueError(f"{path}: column {bools[0]!r} holds true/false values; write 1 or 0")
    try: x = np.column_stack([pc.cast(c, pa.float64()).to_numpy(zero_copy_only=False) for c in batch])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError): x = None
    if x is not None and np.isfinite(x).all(): return x, False
    text = batch.to_pandas().map(str)          # the checks below are slower and name the value
    return parse_applicants(text, path, first_row).numpy(), True

def parse_applicants(table: pd.DataFrame, # text, one column per feature
                     path: str | Path = 'input', # named in the errors
                     first_row: int = 0, # data rows before this table (for the row named in errors)
                    ) -> torch.Tensor:
    ("The applicants' features as float64 (n, D); refuses a value that is missing, not a number, "
     "or infinite.")
    if not isinstance(table, pd.DataFrame):
        raise TypeError("parse_applicants needs a DataFrame of text, one column per feature")
    num = table.apply(pd.to_numeric, errors='coerce')
    bad = num.isna() | np.isinf(num)
    if bad.any().any():
        row = int(bad.any(axis=1).to_numpy().argmax()); col = bad.iloc[row].idxmax()  # the first bad row
        v, at, what = table[col].iloc[row], f"(data row {first_row + row + 1})", f"{path}: column {col!r} has"
        if v.strip().lower() in _NA_TEXT:
            raise ValueError(f"{what} a missing value {at}; impute or drop it first")
        if np.isinf(num[col].iloc[row]): raise ValueError(f"{what} an infinite value {v!r} {at}")
        hint = '; write 1 or 0 for true or false' if v.strip().lower() in ('true', 'false') else ''
        raise ValueError(f"{what} a non-numeric value {v!r} {at}{hint}")
    return torch.from_numpy(np.array(num.to_numpy(np.float64)))   # a writable copy

def read_applicants(path: str | Path, scm) -> torch.Tensor:
    ("A (small) CSV or Parquet file of applicants with one column per feature of `scm`, as float64 "
     "(n, D); clear errors for bad files.")
    return torch.from_numpy(np.concatenate([x for _, x in applicant_batches(path, scm)]))


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
    rec: Recommendation        # mask empty, values = x (float32), prob NaN where not served or accepted
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
# be a folder; and its folder must be writable. Its name chooses its format, as for the input. The file
# is written atomically (chapter 0), chunk after chunk into a temporary file that replaces the output
# only when the last row is written, so it is complete or absent, and an error names the output path,
# never the temporary file. `strict=True` (`--strict`) turns any refused row into an error, and then
# nothing is written.

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

def output_columns(model: CARMA, # the model that served
                   s: Served, # its answer for a chunk
                  ) -> dict[str, pa.Array]:
    ("The output's columns after the applicant's own: status, accepted, probabilities, and per actionable "
     "feature the act and its target; missing values are null.")
    missing = lambda v, gone: pa.array(v, mask=gone)
    known = ~s.prob_before.isnan().numpy()                      # refused on input: accepted is unknown
    cols = {'status': pa.array(s.status.astype(str)),
            'accepted': missing(s.rec.accepted.numpy(), ~known),
            'prob_before': missing(s.prob_before.numpy(), ~known)}
    for j in get_scm(model.scm).actionable:
        act = s.rec.mask[:, j].numpy()
        cols[f'act_{model.names[j]}'] = pa.array(act)
        cols[f'{model.names[j]}_target'] = missing(s.rec.values[:, j].numpy(), ~act)
    cols['prob_after'] = missing(s.rec.prob.numpy(), s.rec.prob.isnan().numpy())
    return cols

def _csv_field(a: pa.Array, plain: bool = False, # known to need no quotes (numbers written as read)
              ) -> pa.Array:
    "A column as CSV text: True/False, numbers in their shortest form, quoted where needed, '' for missing."
    if pa.types.is_boolean(a.type): return pc.if_else(a, 'True', 'False').fill_null('')
    text = any(f(a.type) for f in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                    pa.types.is_large_binary))
    if plain or not text: return pc.cast(a, pa.string()).fill_null('')     # numbers never need quotes
    a = pc.cast(a, pa.string())                  # text (the status, features as read) may hold anything
    need = pc.match_substring_regex(a, '[,"\r\n]')
    if not pc.any(need).as_py(): return a.fill_null('')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(a, '"', '""'), '"', '')
    return pc.if_else(need, quoted, a).fill_null('')

class _CsvWriter:
    "Writes chunks of columns as CSV lines, joined by pyarrow, to an open binary file."
    def __init__(self, f): self.f, self.header = f, False
    def write(self, cols: dict[str, pa.Array], plain=()):   # plain: columns known to need no quotes
        if not self.header: self.f.write((','.join(cols) + '\n').encode()); self.header = True
        line = pc.binary_join_element_wise(*(_csv_field(a, k in plain) for k, a in cols.items()), ',')
        line = pc.binary_join_element_wise(line, '', '\n').cast(pa.string())
        offsets = np.frombuffer(line.buffers()[1], np.int32)[line.offset:line.offset + len(line) + 1]
        self.f.write(memoryview(line.buffers()[2])[offsets[0]:offsets[-1]])
    def close(self): pass

class _ParquetWriter:
    "Writes chunks of columns as row groups of one Parquet file."
    def __init__(self, f): self.f, self.w = f, None
    def write(self, cols: dict[str, pa.Array], plain=()):
        table = pa.table(cols)
        self.w = self.w or pq.ParquetWriter(self.f, table.schema)
        self.w.write_table(table)
    def close(self):
        if self.w: self.w.close()

STATUSES = ('served', 'already accepted', 'no valid action', 'refused')

@dataclass
class FileReport:
    "What `recommend_file` did: how many applicants, how many of each status, the first refused rows."
    output: Path
    rows: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    first_refused: list = field(default_factory=list)    # (data row, reason) of the first few refused
    seconds: float = 0.0

    def add(self, status: np.ndarray, shown: int = 3) -> None:
        "Count a chunk's statuses (the chunk's rows follow those already counted)."
        refused = np.flatnonzero(np.char.startswith(status.astype(str), 'refused'))
        for k in STATUSES[:3]: self.counts[k] += int((status == k).sum())
        self.counts['refused'] += len(refused)
        self.first_refused += [(self.rows + int(i) + 1, status[i].removeprefix('refused: '))
                               for i in refused[:shown - len(self.first_refused)]]
        self.rows += len(status)

    def refused_line(self) -> str:
        "One line about the refused rows: how many, which data rows, the first reasons."
        first = '; '.join(f"data row {i}: {why}" for i, why in self.first_refused)
        more = '; …' if self.counts['refused'] > len(self.first_refused) else ''
        return f"{self.counts['refused']} of {self.rows} applicants refused ({first}{more})"

def recommend_file(model: str | Path | CARMA, # a saved CARMA model (save_carma), or one loaded
                   input_path: str | Path, output_path: str | Path,
                   scm: str | None = None, # the SCM the model must be of (None: any)
                   # drop acts with a smaller latent shift (0: none); None: the model's own
                   idle_tol: float | None = None,
                   strict: bool = False, # raise (and write nothing) when any applicant is refused
                  ) -> FileReport:
    ("A status and recommendations for every applicant of a CSV or Parquet file, by a CARMA model, "
     "served chunk by chunk and written atomically.")
    files = (input_path,) if isinstance(model, CARMA) else (input_path, model)
    t0, out_path = time.perf_counter(), check_output_path(output_path, *files)
    if not isinstance(model, CARMA): model = load_carma(model, scm)
    elif scm and model.scm != get_scm(scm).name:
        raise ValueError(f"the model is of {model.scm!r}, not of {scm!r}")
    if idle_tol is not None:                           # (on a copy: the caller's model is left as it is)
        model = copy.copy(model); model.idle_tol = check_positive(idle_tol, 'idle_tol', zero=True) or None
    report, to_parquet = FileReport(out_path), is_parquet(out_path)
    bar, step = _progress_bar(input_path)
    try:
        with atomic_write(out_path, 'wb') as f, bar, ThreadPoolExecutor(1) as writes:
            writer, written = (_ParquetWriter if to_parquet else _CsvWriter)(f), None
            for batch, x in _ahead(applicant_batches(input_path, model.scm, CHUNK_BYTES)):
                s = serve(model, torch.from_numpy(x))
                report.add(s.status)
                feats = ([pa.array(x[:, j]) for j in range(x.shape[1])] if to_parquet else batch.columns)
                checked = b'carma_checked' in (batch.schema.metadata or {})   # text that may need quotes
                plain = () if checked else model.names
                cols = dict(zip(model.names, feats)) | output_columns(model, s)
                if written: written.result()                           # one chunk written at a time, in order
                written = writes.submit(writer.write, cols, plain)
                bar.update(step(batch))
            if written: written.result()
            writer.close()
            if strict and report.counts['refused']:
                raise ValueError(f"--strict: {report.refused_line()}; nothing written")
    except OSError as e:
        raise ValueError(f"cannot read the input {str(input_path)!r} or write the output {str(out_path)!r}: "
                         f"{e.strerror or e}") from None
    report.seconds = time.perf_counter() - t0
    return report

class _Failed(NamedTuple): error: BaseException

def _ahead(items: Iterator, depth: int = 2) -> Iterator:
    ("The items, produced up to `depth` ahead by a thread of their own (reading the next chunk while this "
     "one is served); its errors are raised here.")
    q, stop, end = queue.Queue(depth), threading.Event(), object()
    def put(it) -> bool:
        while not stop.is_set():
            try: q.put(it, timeout=0.1); return True
            except queue.Full: pass
        return False
    def produce():
        try:
            for it in items:
                if not put(it): return
            put(end)
        except BaseException as e: put(_Failed(e))
    threading.Thread(target=produce, daemon=True).start()
    try:
        while (it := q.get()) is not end:
            if isinstance(it, _Failed): raise it.error
            yield it
    finally: stop.set()

def _progress_bar(path) -> tuple:
    "A progress bar over the input (rows of a Parquet file, bytes of a CSV file; on a terminal only)."
    path, off = _check_readable(path), True if not sys.stderr.isatty() else None
    if is_parquet(path):
        try: total = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError): total = None       # applicant_batches names the problem
        return progress(total=total, desc='recommend', unit='rows', disable=off), lambda b: b.num_rows
    text_bytes = lambda b: b.num_rows * b.num_columns + sum(pc.sum(pc.binary_length(c)).as_py() or 0
                                                            for c in b.columns)
    return (progress(total=os.path.getsize(path), desc='recommend', unit='B', unit_scale=True, disable=off),
            text_bytes)


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
    report = run('people.csv', 'actions.csv')
    actions = pd.read_csv(d/'actions.csv')
    test_eq(report.rows, 1000); test_eq(len(actions), 1000)
    test_eq(report.counts, actions['status'].value_counts().reindex(STATUSES, fill_value=0).to_dict())
    acts = [c for c in actions if c.startswith('act_')]
    test_eq(actions.loc[actions['status'] != 'served', acts].to_numpy().any(), False)   # targets: served only
    assert set(actions['status']) <= {'served', 'already accepted', 'no valid action'}
    run('people.csv', 'idle.csv', idle_tol=0.05); fewer = pd.read_csv(d/'idle.csv')
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
    'latin1.csv': ((head + '\n0,30,0,1,1,1,é\n').encode('latin-1'), 'not UTF-8 text: byte 0xe9 on line 2')}
with tempfile.TemporaryDirectory() as d:
    for name, (content, message) in bad_files.items():
        f = Path(d)/name
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        test_fail(lambda: read_applicants(f, 'loan'), contains=message)

# %% [markdown]
# ## Millions of applicants
#
# Served chunk by chunk, a file of any length needs the memory of a few chunks: while one is served, a
# thread reads the next and another writes the previous, in order. Each applicant's recommendation is
# computed from their own row (chapter 7), whoever shares their batch, but a matrix product may group a
# batch's rows differently, so chunks change the numbers by float32 rounding — and a counterfactual
# within rounding of the domain's edge can be served in one chunking and refused in another.
# `tests/test_streaming.py` serves a file in chunks of about thirty rows and at once, and compares.
# Below, 1 000 applicants read in chunks of 4 KiB (about sixty rows each) are the same numbers as read
# at once, and the same file as Parquet gets the same recommendations (to float32 rounding).
# `benchmarks/bench_serving.py` serves ten million applicants this way and measures rows per second
# and peak memory (`benchmarks/RESULTS.md`); of its peak of under 500 MB, about 300 MB is the process
# before any work (torch, pyarrow, the model).

# %%
with tempfile.TemporaryDirectory() as d:
    d = Path(d)
    save_carma(carma, d/'carma_loan.pt')
    people = pd.DataFrame(ref.pools.recourse.test.x[:1000].numpy(), columns=loan.names)
    people.to_csv(d/'people.csv', index=False); people.to_parquet(d/'people.parquet')
    chunks = [x for _, x in applicant_batches(d/'people.csv', 'loan', chunk_bytes=4096)]
    test_eq(np.concatenate(chunks), read_applicants(d/'people.csv', 'loan').numpy())
    assert len(chunks) > 10
    recommend_file(d/'carma_loan.pt', d/'people.csv', d/'actions.csv', 'loan')
    recommend_file(d/'carma_loan.pt', d/'people.parquet', d/'actions.parquet', 'loan')
    from_csv, from_parquet = pd.read_csv(d/'actions.csv'), pd.read_parquet(d/'actions.parquet')
pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False)
len(chunks), from_parquet.dtypes.value_counts().to_dict()


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

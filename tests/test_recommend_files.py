"""Bad applicants' files against `carma-nb recommend` (chapter 13, issue 20 items 4-6): one table of cases.

Each case builds an input (and output path) from a good file of loan applicants, runs the command in a new
process, and checks the exit code, the message, that no traceback is printed, and what was (not) written.
Items: 4 = applicants outside the model's domain, 5 = malformed files, 6 = dangerous or impossible outputs.
"""

import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch

from carma_nb.carma import load_carma, save_carma, set_training_range
from carma_nb.training import train_carma
from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.data import make_pools
from carma_nb.serving import serve
from carma_nb.flow import FlowFit, fit_flow
from carma_nb.scm import get_scm

SMALL = {'classifier': (3000, 500, 500), 'causal': (3000, 500, 500), 'recourse': (2000, 500, 500)}
LOAN = list(get_scm('loan').names)
ACTS = [f'act_{n}' for n in ('education', 'loan_amount', 'income', 'savings')]
TARGETS = [f'{n}_target' for n in ('education', 'loan_amount', 'income', 'savings')]


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    "A tiny loan model, saved, and the text of a good file of 500 applicants it serves without refusal."
    d = tmp_path_factory.mktemp('files')
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=20, optimizer='adam'),
                           cache=False, verbose=False)
    flow = fit_flow('loan', pools.causal, fit=FlowFit(epochs=40, batch=1000), cache=False, verbose=False)
    m = train_carma('loan', clf, flow, pools.recourse, hparams={'epochs': 10}, cache=False, verbose=False)
    save_carma(m, d / 'carma.pt')
    people = torch.cat([pools.recourse.test.x, pools.recourse.val.x])
    people = people[~torch.as_tensor(serve(m, people).refused)][:500]  # a tiny model sends a few people
    assert len(people) == 500  # out of its domain: not in the good file
    pd.DataFrame(people.numpy(), columns=LOAN).to_csv(d / 'people.csv', index=False)
    return d / 'carma.pt', (d / 'people.csv').read_text(), m, pools


def run_cli(*args, cwd=None):
    code = 'import sys; from carma_nb.experiments import main; sys.exit(main())'
    return subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, cwd=cwd)


def set_cell(text: str, row: int, col: str, value: str) -> str:
    "The CSV text with data row `row` (0-based), column `col` replaced by `value` (as text)."
    lines = text.splitlines()
    cells = lines[row + 1].split(',')
    cells[LOAN.index(col)] = value
    lines[row + 1] = ','.join(cells)
    return '\n'.join(lines) + '\n'


def as_booleans(text: str, col: str) -> str:
    "The CSV text with column `col` (0/1) written as False/True, as a spreadsheet may export it."
    df = pd.read_csv(io.StringIO(text), dtype=str)
    df[col] = df[col].map({'0.0': 'False', '1.0': 'True'})
    return df.to_csv(index=False)


def add_fields(text: str, rows) -> str:
    lines = text.splitlines()
    return '\n'.join(l + ',5' if i - 1 in rows else l for i, l in enumerate(lines)) + '\n'


@dataclass
class Case:
    "One bad applicants' file (or output path): how to make it, and what the command must answer."

    id: str
    item: int  # the numbered item of issue 20
    text: Callable[[str], str | bytes] = lambda t: t  # the input file's content from the good file's text
    code: int = 2
    message: str = ''  # must appear in stderr ({tmp}: the case's folder)
    output: Callable[[Path, Path], Path] = lambda tmp, inp: tmp / 'actions.csv'  # the --output path
    args: tuple = ()
    check: Callable | None = None  # check(out_frame, tmp) for cases that write
    skip: str = field(default='')  # reason to skip here


def status_of(row: int, starts: str, ends: str = ''):
    "A check: data row `row` has that status, no act and no target; no other row is refused."

    def check(out, tmp):
        st = out['status'].astype(str)
        assert st[row].startswith(starts) and st[row].endswith(ends), st[row]
        assert not out.loc[row, ACTS].astype(bool).any() and out.loc[row, TARGETS].isna().all()
        assert st.str.startswith('refused').sum() == 1
        assert set(st) <= {'served', 'already accepted', 'no valid action', st[row]}

    return check


def exact_text(out_path, cells):
    raw = pd.read_csv(out_path, dtype=str, keep_default_na=False)
    for (row, col), text in cells.items():
        assert raw.loc[row, col] == text, (row, col, raw.loc[row, col])


def link(kind):
    def make(tmp, inp):
        out = tmp / f'{kind}.csv'
        (os.symlink if kind == 'symlink' else os.link)(inp, out)
        return out

    return make


def under_file(tmp, inp):
    (tmp / 'plain').write_text('a file, not a folder')
    return tmp / 'plain' / 'actions.csv'


def read_only(tmp, inp):
    (tmp / 'locked').mkdir()
    (tmp / 'locked').chmod(0o500)
    return tmp / 'locked' / 'actions.csv'


DOMAIN = "(the training data's range widened by 10 %)"
BINARY = 'outside {0, 1} (a binary feature: 0 or 1)'
EDUCATION = '(the SCM defines education only in (-0.5, 0.5))'
cell = lambda row, col, value: lambda t: set_cell(t, row, col, value)
drop_last_field = lambda t: t.replace(t.splitlines()[2], t.splitlines()[2].rsplit(',', 1)[0])
proc = lambda tmp, inp: Path('/proc/carma_actions.csv')
REPLACE = 'writing would replace it'
CASES = [
    # 4: applicants outside what the model knows are refused, one by one; the others are served
    Case(
        'gender 7',
        4,
        cell(0, 'gender', '7'),
        0,
        f'1 of 500 applicants refused (data row 1: gender 7 {BINARY})',
        check=status_of(0, f'refused: gender 7 {BINARY}'),
    ),
    Case(
        'gender 0.5',
        4,
        cell(4, 'gender', '0.5'),
        0,
        f'data row 5: gender 0.5 {BINARY}',
        check=status_of(4, f'refused: gender 0.5 {BINARY}'),
    ),
    Case(
        'education 0.7',
        4,
        cell(2, 'education', '0.7'),
        0,
        'data row 3: education 0.7 outside ',
        check=status_of(2, 'refused: education 0.7 outside', EDUCATION),
    ),
    Case(
        'age -1000',
        4,
        cell(1, 'age', '-1000'),
        0,
        'data row 2: age -1000 outside [',
        check=status_of(1, 'refused: age -1000 outside [', DOMAIN),
    ),
    Case(
        'age 1e30',
        4,
        cell(1, 'age', '1e30'),
        0,
        'data row 2: age 1e+30 outside [',
        check=status_of(1, 'refused: age 1e+30 outside [', DOMAIN),
    ),
    Case(
        '--strict makes a refusal an error',
        4,
        cell(0, 'gender', '7'),
        2,
        f'--strict: 1 of 500 applicants refused (data row 1: gender 7 {BINARY})',
        args=('--strict',),
    ),
    # 5: malformed files are refused, naming the row, the file or the likely cause
    Case(
        'extra field in the first row (shifted and served before)',
        5,
        lambda t: add_fields(t, {0}),
        2,
        'data row 1 (line 2) has 8 fields but the header has 7',
    ),
    Case(
        'extra field in a later row', 5, lambda t: add_fields(t, {2}), 2, 'data row 3 (line 4) has 8 fields'
    ),
    Case(
        'extra field in every row',
        5,
        lambda t: add_fields(t, set(range(500))),
        2,
        'data row 1 (line 2) has 8 fields',
    ),
    Case(
        'a row with a field missing',
        5,
        drop_last_field,
        2,
        'data row 2 (line 3) has 6 fields but the header has 7',
    ),
    Case('header only', 5, lambda t: t.splitlines()[0] + '\n', 2, 'has a header but no applicants'),
    Case('empty file', 5, lambda t: '', 2, 'is empty; it needs a header'),
    Case(
        'True and False for a binary feature',
        5,
        lambda t: as_booleans(t, 'gender'),
        2,
        "column 'gender' has a non-numeric value 'False' (data row 1); write 1 or 0 for true or false",
    ),
    Case(
        'one True value',
        5,
        cell(3, 'gender', 'True'),
        2,
        "column 'gender' has a non-numeric value 'True' (data row 4); write 1 or 0",
    ),
    Case(
        'an infinite value',
        5,
        cell(3, 'income', 'inf'),
        2,
        "column 'income' has an infinite value 'inf' (data row 4)",
    ),
    Case(
        'not UTF-8',
        5,
        lambda t: set_cell(t, 0, 'income', 'é').encode('latin-1'),
        2,
        "{tmp}/input.csv' is not UTF-8 text: byte 0xe9 on line 2",
    ),
    Case('semicolon-separated', 5, lambda t: t.replace(',', ';'), 2, 'the delimiter looks wrong'),
    Case('tab-separated', 5, lambda t: t.replace(',', '\t'), 2, 'the delimiter looks wrong'),
    # 6: the output never replaces an input, and every failure to write names the output path
    Case('output is the input', 6, output=lambda tmp, inp: inp, message=REPLACE),
    Case('output is a symbolic link to the input', 6, output=link('symlink'), message=REPLACE),
    Case('output is a hard link to the input', 6, output=link('hardlink'), message=REPLACE),
    Case('output is a folder', 6, output=lambda tmp, inp: tmp, message="output '{tmp}' is a folder"),
    Case('output below a file', 6, output=under_file, message="'{tmp}/plain' is a file, not a folder"),
    Case('output folder nobody can write, not even root', 6, output=proc, message=repr(str(proc(0, 0)))),
    Case(
        'output folder is read-only',
        6,
        output=read_only,
        message="folder '{tmp}/locked' cannot be written",
        skip='root writes anywhere' * (os.geteuid() == 0),
    ),
    Case(
        'values are written back exactly as read',
        6,
        lambda t: set_cell(set_cell(t, 0, 'age', '16777217'), 1, 'income', '1.0000000001'),
        0,
        '',
        check=lambda out, tmp: exact_text(
            tmp / 'actions.csv', {(0, 'age'): '16777217', (1, 'income'): '1.0000000001'}
        ),
    ),
]


def recommend(model_path, inp, out, *more):
    return run_cli(
        'recommend',
        '--scm',
        'loan',
        '--model',
        str(model_path),
        '--input',
        str(inp),
        '--output',
        str(out),
        *more,
    )


@pytest.mark.parametrize('case', CASES, ids=[f'{c.item}: {c.id}' for c in CASES])
def test_bad_applicants_files(model, tmp_path, case):
    if case.skip:
        pytest.skip(case.skip)
    model_path, good, _, _ = model
    inp = tmp_path / 'input.csv'
    content = case.text(good)
    inp.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = inp.read_bytes()
    out = case.output(tmp_path, inp)
    existed = out.exists()
    r = recommend(model_path, inp, out, *case.args)
    assert 'Traceback' not in r.stderr, r.stderr
    assert r.returncode == case.code, (r.returncode, r.stderr)
    assert case.message.replace('{tmp}', str(tmp_path)) in r.stderr, r.stderr
    assert inp.read_bytes() == before  # the applicants' file is never touched
    assert '.tmp' not in r.stderr  # the output is named, not a temp file
    if case.code == 2:
        assert r.stderr.startswith('carma-nb recommend: error: ') and r.stderr.count('\n') == 1, r.stderr
        if not existed:
            assert not out.exists()  # nothing written half-way
    else:
        assert case.check is not None
        case.check(pd.read_csv(out), tmp_path)


def test_every_row_has_a_status_and_one_line_says_what_was_refused(model, tmp_path):
    "Item 4: several refused rows, one summary line on stderr, counts on stdout, statuses in the output."
    model_path, good, _, _ = model
    text = cell(9, 'education', '0.7')(cell(3, 'age', '-1000')(cell(0, 'gender', '7')(good)))
    (tmp_path / 'in.csv').write_text(text)
    r = recommend(model_path, tmp_path / 'in.csv', tmp_path / 'out.csv')
    assert r.returncode == 0 and r.stderr.count('\n') == 1, r.stderr
    assert 'warning: 3 of 500 applicants refused (data row 1: gender 7' in r.stderr
    assert 'data row 4: age -1000' in r.stderr and 'data row 10: education 0.7' in r.stderr
    assert '3 refused' in r.stdout
    out = pd.read_csv(tmp_path / 'out.csv')
    st = out['status'].astype(str)
    assert st.str.startswith('refused').tolist() == [i in (0, 3, 9) for i in range(500)]
    assert set(st[~st.str.startswith('refused')]) <= {'served', 'already accepted', 'no valid action'}
    assert out.loc[[0, 3, 9], 'accepted'].isna().all() and out.loc[[0, 3, 9], 'prob_before'].isna().all()
    assert not out.loc[st != 'served', ACTS].to_numpy().any()


def test_a_counterfactual_outside_the_domain_is_refused(model, tmp_path):
    "Item 4: a row inside the domain whose recommendation would leave it gets no targets and says why."
    model_path, _, _, pools = model
    m = load_carma(model_path)
    people = pools.recourse.test.x[m.clf.predict_proba(pools.recourse.test.x) < 0.5][:200]
    set_training_range(m, people)  # it knows only rejected people: acting leaves its range
    s = serve(m, people)
    assert len(s.status) == len(people) and all(isinstance(st, str) and st for st in s.status)
    cf = [i for i, st in enumerate(s.status) if st.startswith('refused: counterfactual ')]
    assert cf, set(s.status)
    assert all(s.status[i].endswith(DOMAIN) or '; also outside: ' in s.status[i] for i in cf)
    assert not s.rec.mask[cf].any() and s.refused[cf].all()
    assert torch.equal(s.rec.values[cf], people[cf])  # no targets: the person's own values
    assert not any(st.startswith('refused: ') and 'counterfactual' not in st for st in s.status)
    save_carma(m, tmp_path / 'narrow.pt')
    pd.DataFrame(people.numpy(), columns=LOAN).to_csv(tmp_path / 'in.csv', index=False)
    r = recommend(tmp_path / 'narrow.pt', tmp_path / 'in.csv', tmp_path / 'out.csv')
    assert r.returncode == 0 and f'{len(cf)} of 200 applicants refused' in r.stderr, r.stderr
    assert pd.read_csv(tmp_path / 'out.csv')['status'].tolist() == list(s.status)


def test_a_model_file_without_a_domain_is_refused(model, tmp_path):
    "Item 4: a model file saved before models recorded their training range fails clearly instead of serving."
    model_path, good, _, _ = model
    payload = torch.load(model_path, weights_only=True)
    del payload['state_dict']['feature_range']
    torch.save(payload, tmp_path / 'old.pt')
    (tmp_path / 'in.csv').write_text(good)
    r = recommend(tmp_path / 'old.pt', tmp_path / 'in.csv', tmp_path / 'out.csv')
    assert r.returncode == 2 and 'has no feature_range' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path / 'out.csv').exists()


def test_serve_checks_its_input(model):
    _, _, m, pools = model
    x = pools.recourse.test.x
    with pytest.raises(ValueError, match=r'x must be \(n, 7\)'):
        serve(m, x[:, :3])
    with pytest.raises(ValueError, match='margin must be'):
        serve(m, x, margin=float('nan'))
    s = serve(m, x[:0])  # nobody: nothing to do, no error
    assert len(s.status) == 0 and s.rec.mask.shape == (0, 7)

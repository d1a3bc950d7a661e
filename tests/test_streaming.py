"""Serving a file chunk by chunk (chapter 13, issue 24 item 5): chunks change no answer, an error in a late
chunk writes nothing and names the row of the whole file, Parquet is read and written like CSV."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import carma_nb.serving as serving
from carma_nb.serving import applicant_batches, read_applicants, recommend_file

from test_recommend_files import LOAN, model, set_cell  # noqa: F401  (model: the module's fixture)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(serving, 'CHUNK_BYTES', 2048)  # about thirty rows per chunk


def test_chunks_change_no_answer(model, tmp_path, small_chunks):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    assert len(list(applicant_batches(tmp_path / 'in.csv', 'loan', serving.CHUNK_BYTES))) > 10
    chunked = recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'chunked.csv', 'loan')
    serving.CHUNK_BYTES = 1 << 30  # the whole file at once
    whole = recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'whole.csv', 'loan')
    a, b = pd.read_csv(tmp_path / 'chunked.csv'), pd.read_csv(tmp_path / 'whole.csv')
    exact = [c for c in a if a[c].dtype != float or c in LOAN]  # features as read, statuses, acts
    pd.testing.assert_frame_equal(a[exact], b[exact])
    # targets and probabilities: float32 rounding (matrix products group a chunk's rows differently)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5, atol=1e-5)
    assert chunked.counts == whole.counts and chunked.rows == whole.rows == 500


def test_a_bad_value_in_a_late_chunk_names_its_row_and_writes_nothing(model, tmp_path, small_chunks):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(set_cell(good, 450, 'income', 'lots'))
    with pytest.raises(ValueError, match=r"column 'income' has a non-numeric value 'lots' \(data row 451\)"):
        recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'out.csv', 'loan')
    assert not (tmp_path / 'out.csv').exists() and not list(tmp_path.glob('.out.csv*'))


def test_strict_counts_the_whole_file_and_writes_nothing(model, tmp_path, small_chunks):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(set_cell(set_cell(good, 3, 'gender', '7'), 470, 'gender', '7'))
    with pytest.raises(
        ValueError, match=r'--strict: 2 of 500 applicants refused \(data row 4: .*data row 471'
    ):
        recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'out.csv', 'loan', strict=True)
    assert not (tmp_path / 'out.csv').exists()
    r = recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'out.csv', 'loan')
    assert r.counts['refused'] == 2 and [i for i, _ in r.first_refused] == [4, 471]


def test_parquet_in_and_out(model, tmp_path, small_chunks):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    pd.read_csv(tmp_path / 'in.csv').to_parquet(tmp_path / 'in.parquet')
    assert len(list(applicant_batches(tmp_path / 'in.parquet', 'loan', serving.CHUNK_BYTES))) > 10
    assert (
        read_applicants(tmp_path / 'in.parquet', 'loan') == read_applicants(tmp_path / 'in.csv', 'loan')
    ).all()
    recommend_file(model_path, tmp_path / 'in.csv', tmp_path / 'out.csv', 'loan')
    recommend_file(model_path, tmp_path / 'in.parquet', tmp_path / 'out.pq', 'loan')
    from_csv, from_parquet = pd.read_csv(tmp_path / 'out.csv'), pd.read_parquet(tmp_path / 'out.pq')
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_dtype=False, atol=1e-5)
    schema = pq.read_schema(tmp_path / 'out.pq')
    assert schema.field('act_income').type == pa.bool_() and schema.field('income').type == pa.float64()


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda df: df.drop(columns='age'), "missing ['age']"),
        (
            lambda df: df.assign(income=df['income'].where(df.index != 40)),
            "'income' has a missing value (data row 41)",
        ),
        (
            lambda df: df.assign(age=df['age'].astype(str).where(df.index != 7, 'old')),
            "non-numeric value 'old' (data row 8)",
        ),
        (
            lambda df: df.assign(age=df['age'].where(df.index != 9, float('inf'))),
            "an infinite value 'inf' (data row 10)",
        ),
    ],
    ids=['a column missing', 'a null', 'text that is not a number', 'an infinite value'],
)
def test_bad_parquet_files(model, tmp_path, make, message):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    make(pd.read_csv(tmp_path / 'in.csv')).to_parquet(tmp_path / 'in.parquet')
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[')):
        recommend_file(model_path, tmp_path / 'in.parquet', tmp_path / 'out.parquet', 'loan')
    assert not (tmp_path / 'out.parquet').exists()


def test_a_csv_file_named_parquet(model, tmp_path):
    model_path, good, _, _ = model
    (tmp_path / 'in.parquet').write_text(good)
    with pytest.raises(ValueError, match='is not a readable Parquet file'):
        read_applicants(tmp_path / 'in.parquet', 'loan')


# found by an adversarial review of the streaming reader and writer


def test_text_with_a_line_break_is_quoted_in_the_output(model, tmp_path):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    df = pd.read_csv(tmp_path / 'in.csv', dtype=str).head(3)
    df.loc[1, 'income'] += '\r\n'  # accepted as a number (whitespace), written back as read
    df.to_parquet(tmp_path / 'in.parquet', index=False)  # text columns: large_string
    recommend_file(model_path, tmp_path / 'in.parquet', tmp_path / 'out.csv', 'loan')
    out = pd.read_csv(tmp_path / 'out.csv', dtype=str, keep_default_na=False)
    assert len(out) == 3 and out.loc[1, 'income'] == df.loc[1, 'income']


@pytest.mark.parametrize(
    'content, message',
    [
        (
            b'gender,age,education,loan_amount,duration,income,savings\r0,1,0,1,1,1,1\r',
            'bare carriage return',
        ),
        (
            b'gender,age,education,loan_amount,duration,income,savings\n0,1,0,1,1,1,1\xc3',
            'ends inside a character',
        ),
    ],
    ids=['old Mac line endings', 'a character cut at the end'],
)
def test_odd_files_get_a_message(tmp_path, content, message):
    (tmp_path / 'in.csv').write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_applicants(tmp_path / 'in.csv', 'loan')


def test_the_first_bad_row_is_named_whatever_the_chunks(model, tmp_path):
    _, good, _, _ = model
    (tmp_path / 'in.csv').write_text(set_cell(set_cell(good, 4, 'savings', '0.5x'), 29, 'gender', 'x1'))
    for chunk in (2048, 1 << 20):
        with pytest.raises(
            ValueError, match=r"column 'savings' has a non-numeric value '0.5x' \(data row 5\)"
        ):
            read_applicants_chunked(tmp_path / 'in.csv', chunk)


def read_applicants_chunked(path, chunk):
    return [x for _, x in applicant_batches(path, 'loan', chunk)]


def test_quoted_line_breaks_do_not_depend_on_the_chunks(model, tmp_path):
    _, good, _, _ = model
    lines = good.splitlines()
    text = '\n'.join(
        [lines[0]] + [line.rsplit(',', 1)[0] + ',"' + line.rsplit(',', 1)[1] + '\n"' for line in lines[1:]]
    )
    (tmp_path / 'in.csv').write_text(text + '\n')
    small, big = (
        read_applicants_chunked(tmp_path / 'in.csv', 2048),
        read_applicants_chunked(tmp_path / 'in.csv', 1 << 20),
    )
    assert len(small) > 5 and (np.concatenate(small) == np.concatenate(big)).all()


def test_booleans_in_parquet_are_refused(model, tmp_path):
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    pd.read_csv(tmp_path / 'in.csv').astype({'gender': bool}).to_parquet(tmp_path / 'in.parquet')
    with pytest.raises(ValueError, match="column 'gender' holds true/false values; write 1 or 0"):
        read_applicants(tmp_path / 'in.parquet', 'loan')


def test_a_parquet_file_with_a_saved_index(model, tmp_path):
    "pandas stores a filtered DataFrame's index as a column of its own: not a feature, and not refused."
    model_path, good, _, _ = model
    (tmp_path / 'in.csv').write_text(good)
    df = pd.read_csv(tmp_path / 'in.csv')
    df[df.index % 2 == 0].to_parquet(tmp_path / 'in.parquet')
    assert len(read_applicants(tmp_path / 'in.parquet', 'loan')) == 250

"""Serving a file chunk by chunk (chapter 13, issue 24 item 5): chunks change no answer, an error in a late
chunk writes nothing and names the row of the whole file, Parquet is read and written like CSV."""

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

"""The `carma-nb` command line (chapters 13 and 14).

recommend on a file, its failure modes, the runner's resume, tune."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from carma_nb.carma import save_carma
from carma_nb.training import train_carma
from carma_nb.classifier import ClassifierFit, train_classifier
from carma_nb.data import make_pools
from carma_nb.experiments import Job, Workers, job_path, main, run_experiments
from carma_nb.serving import read_applicants, recommend_file
from carma_nb.flow import FlowFit, fit_flow
from carma_nb.scm import get_scm

SMALL = {'classifier': (3000, 500, 500), 'causal': (3000, 500, 500), 'recourse': (2000, 500, 500)}
LOAN = get_scm('loan').names


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    pools = make_pools('loan', 0, SMALL)
    clf = train_classifier('loan', pools.classifier, fit=ClassifierFit(epochs=20, optimizer='adam'),
                           cache=False, verbose=False)
    flow = fit_flow('loan', pools.causal, fit=FlowFit(epochs=40, batch=1000), cache=False, verbose=False)
    m = train_carma('loan', clf, flow, pools.recourse, hparams={'epochs': 10}, cache=False, verbose=False)
    save_carma(m, d / 'carma.pt')
    pd.DataFrame(pools.recourse.test.x.numpy(), columns=LOAN).to_csv(d / 'people.csv', index=False)
    return d, m, pools


def run_cli(*args):
    code = 'import sys; from carma_nb.experiments import main; sys.exit(main())'
    return subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True)


def test_recommend_file_matches_the_library(saved):
    d, m, pools = saved
    assert (
        main(
            [
                'recommend',
                '--scm',
                'loan',
                '--model',
                str(d / 'carma.pt'),
                '--input',
                str(d / 'people.csv'),
                '--output',
                str(d / 'out.csv'),
            ]
        )
        == 0
    )
    out = pd.read_csv(d / 'out.csv')
    rec = m.recommend(pools.recourse.test.x)  # the command serves as the model does
    assert len(out) == len(pools.recourse.test.x)
    assert np.array_equal(out['accepted'].to_numpy(), rec.accepted.numpy())
    served = (out['status'] == 'served').to_numpy()
    refused = out['status'].str.startswith('refused').to_numpy()  # a few counterfactuals leave the domain
    assert refused.mean() < 0.05
    assert np.array_equal(served, (~rec.accepted & (rec.prob >= 0.5)).numpy() & ~refused)
    assert np.array_equal(
        out['status'] == 'no valid action', (~rec.accepted & (rec.prob < 0.5)).numpy() & ~refused
    )
    for j, name in ((2, 'education'), (5, 'income')):
        given_j = rec.mask[:, j].numpy() & served  # targets only where served
        assert np.array_equal(out[f'act_{name}'].to_numpy(), given_j)
        np.testing.assert_allclose(
            out.loc[given_j, f'{name}_target'], rec.values[:, j].numpy()[given_j], rtol=1e-5
        )
    given = served | rec.accepted.numpy()
    np.testing.assert_allclose(out['prob_after'][given], rec.prob.numpy()[given], rtol=1e-5)
    assert out['prob_after'][~given].isna().all()


def test_recommend_idle_tol_overrides_the_models_setting(saved):
    d, m, pools = saved
    assert (
        main(
            [
                'recommend',
                '--scm',
                'loan',
                '--model',
                str(d / 'carma.pt'),
                '--input',
                str(d / 'people.csv'),
                '--output',
                str(d / 'every.csv'),
                '--idle-tol',
                '0.05',
            ]
        )
        == 0
    )
    m.idle_tol = 0.05
    out, rec = pd.read_csv(d / 'every.csv'), m.recommend(pools.recourse.test.x)
    m.idle_tol = None
    served = (out['status'] == 'served').to_numpy()
    for j, name in enumerate(LOAN):
        if f'act_{name}' in out:
            assert np.array_equal(out[f'act_{name}'].to_numpy(), rec.mask[:, j].numpy() & served), name
    r = run_cli(
        'recommend',
        '--scm',
        'loan',
        '--model',
        str(d / 'carma.pt'),
        '--input',
        str(d / 'people.csv'),
        '--output',
        str(d / 'neg.csv'),
        '--idle-tol',
        'nan',
    )
    assert (
        r.returncode == 2
        and 'idle_tol must be a finite number ≥ 0' in r.stderr
        and not (d / 'neg.csv').exists()
    )


def test_columns_in_any_order_are_accepted(saved, tmp_path):
    d, m, pools = saved
    df = pd.read_csv(d / 'people.csv')
    df[list(reversed(LOAN))].to_csv(tmp_path / 'rev.csv', index=False)
    assert torch.equal(
        read_applicants(tmp_path / 'rev.csv', 'loan'), read_applicants(d / 'people.csv', 'loan')
    )


@pytest.mark.parametrize(
    'edit, message',
    [
        (lambda df: df.drop(columns='income'), "missing ['income']"),
        (lambda df: df.assign(height=1.7), "unknown ['height']"),
        (
            lambda df: df.astype(object).assign(savings=['x'] + list(df['savings'][1:])),
            "column 'savings' has a non-numeric value 'x' (data row 1)",
        ),
        (
            lambda df: df.assign(age=[np.nan] + list(df['age'][1:])),
            "column 'age' has a missing value (data row 1)",
        ),
    ],
)
def test_bad_input_files_are_refused_with_a_clear_message(saved, tmp_path, edit, message):
    d, _, _ = saved
    edit(pd.read_csv(d / 'people.csv')).to_csv(tmp_path / 'bad.csv', index=False)
    r = run_cli(
        'recommend',
        '--scm',
        'loan',
        '--model',
        str(d / 'carma.pt'),
        '--input',
        str(tmp_path / 'bad.csv'),
        '--output',
        str(tmp_path / 'o.csv'),
    )
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / 'o.csv').exists()


def test_wrong_scm_and_missing_files(saved, tmp_path):
    d, _, _ = saved
    r = run_cli(
        'recommend',
        '--scm',
        'chain-lin',
        '--model',
        str(d / 'carma.pt'),
        '--input',
        str(d / 'people.csv'),
        '--output',
        str(tmp_path / 'o.csv'),
    )
    assert r.returncode == 2 and "scm='chain-lin' was requested" in r.stderr
    r = run_cli(
        'recommend',
        '--scm',
        'loan',
        '--model',
        str(d / 'carma.pt'),
        '--input',
        str(tmp_path / 'nope.csv'),
        '--output',
        str(tmp_path / 'o.csv'),
    )
    assert r.returncode == 2 and 'does not exist' in r.stderr


def test_every_command_has_help():
    for cmd in ([], ['reproduce'], ['recommend'], ['tune']):
        r = run_cli(*cmd, '--help')
        assert r.returncode == 0 and 'usage: carma-nb' in r.stdout


def test_serving_program_equals_the_torch_modules(saved):
    _, m, pools = saved
    x = pools.recourse.test.x[:500]
    rec = m.recommend(x)
    with torch.no_grad():
        accepted = m.clf.predict_proba(x) >= 0.5
        z = m.causal_model.abduct(x)
        a, delta, _ = m.policy(z)
        a = a * ~accepted[:, None]
        x_cf = torch.where(accepted[:, None], x, m.causal_model.latent_counterfactual(z, a, delta))
    assert torch.equal(rec.mask, a.bool()) and torch.equal(rec.accepted, accepted)
    torch.testing.assert_close(rec.x_cf, x_cf, atol=1e-3, rtol=1e-4)


def test_runner_resumes_and_never_reads_half_written_files(tmp_path):
    res = run_experiments(
        'quick', ['chain-lin'], methods=('oracle',), studies=(), out=tmp_path, verbose=False
    )
    job = job_path(tmp_path / 'jobs' / 'quick', Job('chain-lin', 'oracle'), 'quick')
    stored = json.loads(job.read_text())
    assert job.exists() and len(stored['rows']) == 1 and stored['config']['seeds'] == [0, 1]
    assert not list((tmp_path / 'jobs' / 'quick').glob('*.tmp*'))
    stored['rows'][0]['cost x100'] = -1.0
    job.write_text(json.dumps(stored))  # a finished job is not redone
    again = run_experiments(
        'quick', ['chain-lin'], methods=('oracle',), studies=(), out=tmp_path, verbose=False
    )
    assert float(again['cost x100'].iloc[0]) == -1.0 and len(again) == len(res)
    with pytest.raises(ValueError, match='jobs must be a whole number ≥ 1'):
        Workers(jobs=0)
    with pytest.raises(ValueError, match='executor must be one'):
        Workers(executor='dask')
    with pytest.raises(TypeError, match='workers must be a Workers'):
        run_experiments('quick', ['chain-lin'], workers=2, out=tmp_path, verbose=False)


def test_tune_workers_share_one_study(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    for seed in (0, 2):  # two workers, one after the other, same storage; seeds given so that their
        r = run_cli(
            'tune',
            '--scm',
            'chain-lin',
            '--trials',
            '1',
            '--profile',
            'quick',
            '--storage',
            url,
            '--seed',
            str(seed),
        )  # trials are cheap, and cached after one run
        assert r.returncode == 0, r.stderr
    best = json.loads(r.stdout)
    assert best['trials in study'] == 2 and set(best['params']) >= {'lr', 'epochs', 'batch', 'margin', 'tau'}
    assert 0 <= best['validity %'] <= 100 and best['sampler seed'] == 2
    first, second = optuna.load_study(study_name='carma-chain-lin-quick', storage=url).trials
    assert first.params != second.params


def test_tune_workers_draw_their_own_sampler_seeds(tmp_path, monkeypatch):
    "Workers on one study propose different trials (a fresh seed each); one seed given twice repeats them."
    import optuna
    import carma_nb.experiments as ex
    from types import SimpleNamespace as NS

    ref = NS(pools=NS(causal=None, recourse=NS(val=NS(x=None))), clf=None, problem=None)
    model = NS(recommend=lambda x: NS(mask=None, values=None, x_cf=None))
    metrics = NS(metrics={'cost x100': 1.0, 'validity %': 99.0})
    fakes = {
        'oracle_reference': lambda *a, **k: ref,
        'fit_flow': lambda *a, **k: None,  # no training:
        'rejected': lambda *a, **k: None,
        'train_carma': lambda *a, **k: model,  # only what the
        'evaluate_recourse': lambda *a, **k: metrics,
    }  # sampler proposes
    for name, fake in fakes.items():
        monkeypatch.setattr(ex, name, fake)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    trials = lambda study: optuna.load_study(study_name=study, storage=url).trials
    for _ in range(2):
        ex.tune_carma('chain-lin', 1, url, profile='quick', verbose=False)  # two workers
    a, b = trials('carma-chain-lin-quick')
    assert a.params != b.params
    for study in ('x', 'y'):
        ex.tune_carma('chain-lin', 1, url, study, profile='quick', seed=7, verbose=False)
    assert trials('x')[0].params == trials('y')[0].params


@pytest.mark.parametrize('url', ['carma_tune.db', 'sqlite:///{tmp}/no/such/folder/t.db', 'nosuchdb://host/t'])
def test_tune_refuses_a_bad_storage_before_training(tmp_path, url):
    url = url.format(tmp=tmp_path)
    env = {**os.environ, 'CARMA_CACHE': str(tmp_path / 'cache')}
    code = 'import sys; from carma_nb.experiments import main; sys.exit(main())'
    args = ['tune', '--scm', 'chain-lin', '--trials', '1', '--profile', 'quick', '--storage', url]
    r = subprocess.run(
        [sys.executable, '-c', code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 2 and 'carma-nb tune: error: --storage' in r.stderr and url in r.stderr, r.stderr
    assert not (tmp_path / 'cache').exists()  # nothing was trained (nor cached)


_POOL_PARENT = '''import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from carma_nb.experiments import _worker_init

def job(folder):
    open(os.path.join(folder, str(os.getpid())), 'w').close()
    time.sleep(120)                                     # a long job, still running when the parent is killed

if __name__ == '__main__':                              # the pool of run_experiments and reproduce's chapters
    ex = ProcessPoolExecutor(2, mp_context=get_context('spawn'), initializer=_worker_init)
    for _ in range(2): ex.submit(job, sys.argv[1])
    time.sleep(120)
'''


def _alive(pid: int) -> bool:
    "Whether process `pid` runs (a zombie, dead but not yet reaped, counts as ended)."
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ('Z', 'X')


@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='reads process states from /proc')
def test_workers_exit_when_their_parent_is_killed(tmp_path):
    (tmp_path / 'parent.py').write_text(_POOL_PARENT)
    (tmp_path / 'pids').mkdir()
    parent = subprocess.Popen([sys.executable, str(tmp_path / 'parent.py'), str(tmp_path / 'pids')])
    workers = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [int(p.name) for p in (tmp_path / 'pids').iterdir()]
        assert len(workers) == 2, 'the workers did not start their jobs'
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, workers)), f'{[w for w in workers if _alive(w)]} outlived their parent'
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


WORLD = '''from carma_nb.scm import SCM, additive, normal, register_scm
nodes = [additive('skill', [], lambda x: 0., normal(0, 1)),
         additive('income', [0], lambda x: 1 + 0.8 * x[0], normal(0, 1)),
         additive('savings', [1], lambda x: 0.5 * x[1], normal(0, 1))]
register_scm('cli-world', lambda: SCM('cli-world', nodes, lambda x, u: x[1] + x[2] >= 1.5), replace=True)
'''


def test_recommend_serves_a_registered_scm_of_ones_own(tmp_path):
    "A model of a user's SCM is served in a new process once --import names the module that registers it."
    from carma_nb.experiments import import_user_module

    (tmp_path / 'cli_world.py').write_text(WORLD)
    import_user_module(str(tmp_path / 'cli_world.py'))
    small = {'classifier': (2000, 300, 300), 'causal': (2000, 300, 300), 'recourse': (1500, 300, 300)}
    pools = make_pools('cli-world', 0, small)
    clf = train_classifier(
        'cli-world', pools.classifier, fit=ClassifierFit(epochs=20, optimizer='adam'),
        cache=False, verbose=False
    )
    flow = fit_flow('cli-world', pools.causal, fit=FlowFit(epochs=40, batch=1000), cache=False, verbose=False)
    m = train_carma(
        'cli-world', clf, flow, pools.recourse, hparams={'epochs': 10}, cache=False, verbose=False
    )
    save_carma(m, tmp_path / 'carma.pt')
    pd.DataFrame(pools.recourse.test.x.numpy(), columns=['skill', 'income', 'savings']).to_csv(
        tmp_path / 'people.csv', index=False
    )
    io = [
        '--scm',
        'cli-world',
        '--model',
        str(tmp_path / 'carma.pt'),
        '--input',
        str(tmp_path / 'people.csv'),
    ]
    r = run_cli('recommend', *io, '--output', str(tmp_path / 'a.csv'))
    assert r.returncode == 2 and 'add --import MODULE' in r.stderr and not (tmp_path / 'a.csv').exists()
    r = run_cli(
        'recommend', '--import', str(tmp_path / 'cli_world.py'), *io, '--output', str(tmp_path / 'a.csv')
    )
    assert r.returncode == 0, r.stderr
    script = Path(sys.executable).with_name('carma-nb')  # the installed command, run beside the module:
    r = subprocess.run(
        [str(script), 'recommend', '--import', 'cli_world', *io, '--output', 'b.csv'],  # a dotted name
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    a, b = pd.read_csv(tmp_path / 'a.csv'), pd.read_csv(tmp_path / 'b.csv')
    rec = m.recommend(pools.recourse.test.x)
    pd.testing.assert_frame_equal(a, b)
    known = ~a['status'].str.startswith('refused').to_numpy()  # small training split: some people outside
    assert known.mean() > 0.95
    assert np.array_equal(a['accepted'][known].astype(bool).to_numpy(), rec.accepted.numpy()[known])
    served = (a['status'] == 'served').to_numpy()
    assert np.array_equal(a['act_savings'].to_numpy(), rec.mask[:, 2].numpy() & served)
    r = run_cli(
        'recommend', '--import', str(tmp_path / 'missing.py'), *io, '--output', str(tmp_path / 'c.csv')
    )
    assert r.returncode == 2 and 'no such file' in r.stderr


def test_import_user_module_errors_name_the_fix():
    "--import: an SCM is found once its module is imported (once per process); each failure names the fix."
    from fastcore.test import test_eq, test_fail

    from carma_nb.experiments import _known_scm, import_user_module

    with tempfile.TemporaryDirectory() as d:
        world = Path(d) / 'toy_world.py'
        world.write_text(
            "from carma_nb.scm import SCM, additive, normal, register_scm\n"
            "nodes = [additive('a', (), lambda x: 0., normal(0, 1)), "
            "additive('b', (0,), lambda x: x[0], normal(0, 1))]\n"
            "register_scm('toy-world', lambda: SCM('toy-world', nodes, lambda x, u: x[1] > 0))\n"
        )
        test_fail(lambda: _known_scm('toy-world'), contains='add --import MODULE')
        test_eq(_known_scm('toy-world', [str(world)]), 'toy-world')
        # once per process: no second registration
        test_eq(import_user_module(str(world)), import_user_module(str(world)))
        test_fail(lambda: import_user_module(str(Path(d) / 'nope.py')), contains='no such file')
        test_fail(lambda: import_user_module('no_such_module_xyz'), contains='give a module importable')


def test_tuning_workers_propose_different_trials_unless_given_one_seed(tmp_path):
    "Two workers on one study propose their first trial (no training): fresh seeds differ, one seed agrees."
    import optuna

    from carma_nb.experiments import _shown, _suggest, _tune_study, tune_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f'sqlite:///{tmp_path}/study.db'

    def first_trial(seed):
        study, used = _tune_study('chain-lin', 'quick', url, None, seed)
        return _suggest(study.ask()), used

    (a, seed_a), (b, seed_b) = first_trial(None), first_trial(None)
    assert a != b and seed_a != seed_b
    assert first_trial(7) == first_trial(7)
    with pytest.raises(ValueError, match='cannot be opened'):
        tune_storage(f'sqlite:///{tmp_path}/no/such/folder/x.db')
    with pytest.raises(ValueError, match='is not a database URL'):
        tune_storage('carma_tune.db')
    with pytest.raises(ValueError, match='seed must be an integer'):
        _tune_study('chain-lin', 'quick', url, None, -1)
    assert _shown('postgresql://ann:secret@db.example/tune') == 'postgresql://ann:***@db.example/tune'

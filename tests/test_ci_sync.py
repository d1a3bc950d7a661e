"""The sync check of .ci/run fails when a committed notebook and carma_nb/ disagree."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    not (ROOT / '.venv' / 'bin' / 'nbdev_export').exists() or shutil.which('git') is None,
    reason='needs the project .venv and git',
)


def _clone(tmp_path):
    dst = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', str(ROOT), str(dst)], check=True)
    (dst / '.venv').symlink_to(ROOT / '.venv')
    env = {
        **os.environ,
        'GIT_AUTHOR_NAME': 't',
        'GIT_AUTHOR_EMAIL': 't@t',
        'GIT_COMMITTER_NAME': 't',
        'GIT_COMMITTER_EMAIL': 't@t',
    }
    return dst, env


def _check(dst, env):
    return subprocess.run(['bash', '.ci/check_sync'], cwd=dst, env=env, capture_output=True, text=True)


def test_sync_check_passes_on_clean_clone_and_fails_on_a_hand_edited_library(tmp_path):
    dst, env = _clone(tmp_path)
    r = _check(dst, env)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(dst / 'carma_nb' / 'scm.py', 'a') as f:
        f.write('\n# edited by hand\n')
    subprocess.run(['git', 'commit', '-qam', 'hand edit'], cwd=dst, env=env, check=True)
    r = _check(dst, env)
    assert r.returncode == 1 and 'carma_nb/scm.py' in r.stderr


def test_sync_check_fails_when_mirror_and_notebook_disagree(tmp_path):
    dst, env = _clone(tmp_path)
    py = dst / 'nbs' / '02_data.py'
    py.write_text(
        py.read_text().replace(
            "POOLS, SPLITS = tuple(POOL_SIZES)", "POOLS, SPLITS = tuple(POOL_SIZES)  # edited"
        )
    )
    subprocess.run(['git', 'commit', '-qam', 'mirror only'], cwd=dst, env=env, check=True)
    r = _check(dst, env)
    assert r.returncode == 1 and 'Out of sync' in r.stderr

"""Nothing a user has is lost: kit commands that would have deleted or overwritten a user's files refuse, with one
line naming the folder and what to do, and leave every file as it was (issue: `train` unlinked an earlier run's
model.pt and logs; `pseudo --out U/SegmentationClass` replaced the ground-truth masks). On the real layouts written
by conftest.py's fixtures; tiny sizes."""
import hashlib
import shutil
from pathlib import Path

import pytest

from pis_nb.cli import main


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest.py


def _digests(folder: Path) -> dict:
    "{relative path: SHA-256} of every file under `folder`."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture
def trained(tmp_path, data_voc, data_user):
    "A finished source-only run on the real layouts, and the options it was trained with."
    sets = dict(source_root=data_voc.root, personal_root=data_user.root.parent, backbone='small', pretrained=False,
                crop_size=32, base_size=32, eval_size=32, batch_size=2, num_workers=0, num_steps=2, device='cpu')
    opts = [a for k, v in sets.items() for a in ('--set', f'{k}={v}')]
    assert main(['train', str(tmp_path/'run'), '--method', 'source', '--quiet', *opts]) == 0
    return tmp_path/'run', data_user, opts


def test_train_keeps_an_earlier_runs_results(trained, capsys):
    "A finished run whose checkpoint is gone: `train` into it again refuses, and model.pt, logs and summary stay."
    run, _, opts = trained
    (run/'checkpoint.pt').unlink()
    before = _digests(run)
    assert {'model.pt', 'log.jsonl', 'summary.json'} <= set(before)
    capsys.readouterr()
    assert main(['train', str(run), '--method', 'source', '--quiet', *opts]) == 2
    err = capsys.readouterr().err.strip()
    assert 'holds the results of an earlier run (model.pt' in err and 'nothing was changed' in err and len(err.splitlines()) == 1, err
    assert _digests(run) == before


def test_pseudo_never_writes_into_the_users_folder(trained, capsys):
    "`pseudo --out` inside the user's folder (its SegmentationClass/ above all) or into a folder of other files refuses; the masks stay."
    run, user, opts = trained
    before = _digests(user.root)
    for out in (user.root/'SegmentationClass', user.root/'pseudo'):
        capsys.readouterr()
        assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(out), '--quiet', *opts]) == 2
        err = capsys.readouterr().err.strip()
        assert "inside the user's data folder" in err and len(err.splitlines()) == 1, err
    assert _digests(user.root) == before
    mine = run.parent/'my-notes'; mine.mkdir(); (mine/'a.txt').write_text('mine')
    assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(mine), '--quiet', *opts]) == 2
    assert 'not pis-nb pseudo labels' in capsys.readouterr().err
    assert _digests(mine) == {'a.txt': hashlib.sha256(b'mine').hexdigest()}
    assert main(['pseudo', str(run), '--user', str(user.root), '--out', str(run.parent/'pl'), '--quiet', *opts]) == 0
    assert (run.parent/'pl'/'pseudo.json').is_file() and _digests(user.root) == before

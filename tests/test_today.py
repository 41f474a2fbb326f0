"""Today's label-free baselines and per-user deltas from the command line, on the real layouts: a VOCdevkit folder
and a PIS release user folder written by the fixtures of conftest.py (not by PIS-Synth). `pis-nb train --method
tent | ema_st` and `--set adapt_params=norm | heads` train from a source-only run; `pis-nb eval` scores the delta
runs through their source model, and refuses a delta whose source model changed. Tiny sizes; no test times anything."""
import json
import shutil

import pytest
import torch

from pis_nb.cli import main
import pis_nb.train as T


pytestmark = pytest.mark.usefixtures('one_thread')   # conftest.py


@pytest.fixture
def layout(tmp_path, data_voc, data_user):
    "The two released layouts and the `--set` options of a tiny run on them."
    sets = dict(source_root=data_voc.root, personal_root=data_user.root.parent, backbone='small', pretrained=False,
                crop_size=32, base_size=32, eval_size=32, batch_size=2, num_workers=0, num_steps=2, device='cpu',
                num_groups=80)
    opts = [a for k, v in sets.items() for a in ('--set', f'{k}={v}')]
    rc = main(['train', str(tmp_path/'source'), '--method', 'source', '--quiet', *opts])
    assert rc == 0
    return tmp_path, data_user, opts


def _train(out, user, opts, *extra):
    return main(['train', str(out), '--user', str(user.root), '--init', str(out.parent/'source'), '--quiet', *opts, *extra])


def test_tent_and_ema_st_train_on_the_released_layouts(layout, capsys):
    tmp, user, opts = layout
    assert _train(tmp/'tent', user, opts, '--method', 'tent') == 0
    assert 'tent stage 1: finished at step 2' in capsys.readouterr().out
    cfg, info = json.loads((tmp/'tent'/'config.json').read_text()), json.loads((tmp/'tent'/'run.json').read_text())
    assert (cfg['adapt_params'], cfg['norm_stats'], cfg['context_mode'], info['method']) == ('norm', 'batch', 'none', 'tent')
    src = T.load_checkpoint(tmp/'source'/'model.pt')['model']
    tent = T.read_weights(tmp/'tent'/'model.pt')['model']
    moved = {k for k in tent if not torch.equal(tent[k], src[k])}
    net, _ = T.load_model(tmp/'tent')
    bn = {n for n, m in net.named_modules() if m in T.batch_norms(net)}
    assert moved and all(k.rsplit('.', 1)[0] in bn and k.endswith(('weight', 'bias')) for k in moved), moved
    assert _train(tmp/'ema', user, opts, '--method', 'ema_st', '--param', 'mic=1', '--param', 'mask_block=8') == 0
    log = T.read_log(tmp/'ema')
    assert {'seg', 'pse', 'mic', 'pse_weight', 'ema_a'} <= set(log.columns) and log['ema_a'].tolist()[0] == 0.5
    assert _train(tmp/'tent-heads', user, opts, '--method', 'tent', '--set', 'adapt_params=heads') == 2
    assert "adapts adapt_params='norm' by definition" in capsys.readouterr().err


@pytest.mark.parametrize('adapt', ['norm', 'heads'])
def test_delta_runs_evaluate_through_their_source_and_refuse_another(layout, adapt, capsys):
    tmp, user, opts = layout
    assert _train(tmp/adapt, user, opts, '--method', 'ours', '--set', f'adapt_params={adapt}') == 0
    ck = T.load_checkpoint(tmp/adapt/'model.pt')
    full = T.read_weights(tmp/adapt/'model.pt')['model']
    assert ck['delta']['adapt_params'] == adapt and 0 < len(ck['model']) < len(full)
    weights = json.loads((tmp/adapt/'summary.json').read_text())['weights']
    assert weights['file_bytes'] == (tmp/adapt/'model.pt').stat().st_size and weights['network_bytes'] < weights['full_network_bytes']
    assert main(['eval', str(tmp/adapt), '--quiet']) == 0
    assert 'fiou' in capsys.readouterr().out
    # the source run retrained in place (same path, other weights): the delta no longer fits it, and says so
    shutil.rmtree(tmp/'source')
    assert main(['train', str(tmp/'source'), '--method', 'source', '--quiet', *opts, '--set', 'seed=1']) == 0
    assert main(['eval', str(tmp/adapt), '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'another source model' in err and 'model.pt' in err and 'Traceback' not in err

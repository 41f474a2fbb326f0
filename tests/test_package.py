"""The built package carries what the kit needs at run time: the shipped source model (package data), the modules and
the console script, so `pip install pis-nb` from a wheel runs the demo as the editable install does."""
import json, subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSET = 'pis_nb/assets/pis-synth-source-small'


def test_wheel_carries_the_shipped_source_model(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    wheel, = tmp_path.glob('pis_nb-*.whl')
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for f in ('model.pt', 'config.json', 'run.json', 'summary.json', 'provenance.json'):
            assert f'{ASSET}/{f}' in names, f
        assert z.read(f'{ASSET}/model.pt') == (ROOT/ASSET/'model.pt').read_bytes()
        prov = json.loads(z.read(f'{ASSET}/provenance.json'))
        entry = next(n for n in names if n.endswith('entry_points.txt'))
        assert 'pis-nb = pis_nb.cli:main' in z.read(entry).decode()
    assert prov['steps'] == 8000 and len(prov['sha256']) == 64
    assert {'pis_nb/cli.py', 'pis_nb/bench.py', 'pis_nb/_modidx.py'} <= names

"""Every notebook as a reader runs it: top to bottom in a plain Jupyter kernel (not nbdev_test: `IN_TEST` unset, so the
sizes are the reader's, and the cells flagged `slow`/`cuda` run too, which must then skip their heavy or GPU work by
themselves), from `nbs/` like JupyterLab. Fails on any error cell. The seconds each notebook took go to
tests/out/plain_kernel_seconds.csv (a record, not an assertion: the stated times are checked by reading it)."""
import os, time
from pathlib import Path
import pytest

NBS = Path(__file__).parents[1]/'nbs'
NOTEBOOKS = sorted(p.name for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))
OUT = Path(__file__).parent/'out'

@pytest.fixture(scope='module')
def plain_env(tmp_path_factory):
    "The environment of a fresh shell: no nbdev test variables, heavy cells off, the project home an empty folder."
    keep = {k: os.environ.get(k) for k in ('IN_TEST', 'PIS_NB_HEAVY', 'PIS_NB_HOME', 'MPLBACKEND')}
    for k in ('IN_TEST', 'PIS_NB_HEAVY'): os.environ.pop(k, None)
    # an empty home: the notebooks' demo cells take their no-demo-yet path, nothing lands in the checkout's data/
    os.environ['PIS_NB_HOME'] = str(tmp_path_factory.mktemp('home'))
    os.environ['MPLBACKEND'] = 'module://matplotlib_inline.backend_inline'
    (OUT/'plain_kernel_seconds.csv').unlink(missing_ok=True)     # this session's figures only
    yield
    for k, v in keep.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v

def _errors(nb) -> list[str]:
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue', '')[:300]}" for i, c in enumerate(nb.cells) if c.cell_type == 'code'
            for o in c.get('outputs', []) if o.get('output_type') == 'error']

def test_notebook_list():
    "The notebooks this test runs are the kit's numbered notebooks and its index."
    assert 'index.ipynb' in NOTEBOOKS and '00_core.ipynb' in NOTEBOOKS and len(NOTEBOOKS) >= 15, NOTEBOOKS

@pytest.mark.parametrize('name', NOTEBOOKS)
def test_runs_in_a_plain_kernel(plain_env, name):
    "Run All of `name` in a plain kernel finishes without an error cell."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(NBS/name, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name='python3', allow_errors=True,
                   resources={'metadata': {'path': str(NBS)}}).execute()
    dt = time.perf_counter() - t0
    OUT.mkdir(exist_ok=True)
    with open(OUT/'plain_kernel_seconds.csv', 'a') as f: f.write(f"{name},{dt:.1f}\n")
    assert not _errors(nb), '\n'.join(_errors(nb))

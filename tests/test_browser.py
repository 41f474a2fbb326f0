"""Widgets in a real JupyterLab: start JupyterLab on localhost, open a notebook in headless Chromium, run it, and
check that the widgets rendered (a screenshot goes to tests/out/). Marked `browser`; tests/run.sh installs Chromium
(Debian's package) and runs it. Skipped, with the reason, where no Chromium can be had outside CI."""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

pytestmark = pytest.mark.browser
OUT = Path(__file__).parent/'out'

def _chromium():
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe is None:
        if os.environ.get('CI'): pytest.fail('Chromium is missing in CI: tests/run.sh should have installed it')
        pytest.skip('no Chromium on this machine (tests/run.sh installs it as root)')
    return exe

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _notebook(path: Path, cells: list[str]):
    nb = {'cells': [{'cell_type': 'code', 'metadata': {}, 'source': c, 'outputs': [], 'execution_count': None} for c in cells],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on 127.0.0.1 serving a temporary folder; yields (url, folder)."
    root = tmp_path_factory.mktemp('lab')
    port, token = _free_port(), secrets.token_hex(16)
    # no "get Jupyter news?" prompt: nothing here may reach out to the network
    settings = root/'.lab-settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    (settings/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false', 'checkForUpdates': False}))
    # every cell rendered (no windowing), so a widget far down a long notebook is on the page to click
    nbset = root/'.lab-settings'/'@jupyterlab'/'notebook-extension'
    nbset.mkdir(parents=True)
    (nbset/'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(root/'.jupyter'), 'JUPYTER_RUNTIME_DIR': str(root/'.runtime'),
           'IPYTHONDIR': str(root/'.ipython'), 'JUPYTERLAB_SETTINGS_DIR': str(root/'.lab-settings'), 'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--ServerApp.port={port}', '--ServerApp.ip=127.0.0.1',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--ServerApp.port_retries=0',
           '--LabApp.news_url=', '--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           '--LabApp.extension_manager=readonly', '--allow-root']
    log = open(root/'lab.log', 'w')
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
            except OSError:
                if proc.poll() is not None: pytest.fail('JupyterLab exited:\n' + (root/'lab.log').read_text()[-3000:])
                time.sleep(0.5)
        else: pytest.fail('JupyterLab did not start in 60 s:\n' + (root/'lab.log').read_text()[-3000:])
        yield url, token, root
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()

def _all_ran(page, panel: str, timeout_s: int) -> None:
    "Wait until every code cell of the notebook has an execution count (Run All finished), failing on a timeout."
    prompts = page.locator(f'{panel} .jp-CodeCell .jp-InputArea-prompt')
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        texts = prompts.all_inner_texts()
        if texts and all(any(ch.isdigit() for ch in t) for t in texts): return
        time.sleep(1)
    raise AssertionError(f'Run All did not finish in {timeout_s} s: prompts {texts[-5:]}')

def run_in_lab(lab, name: str, cells: list[str] | None, wait_for: str, timeout_s: int = 120, act=None, whole: bool = False):
    """Open a notebook of `cells` (None: the notebook `name`.ipynb already in the lab's folder) in JupyterLab, run all
    cells, wait for selector `wait_for` (and, with `whole`, for every cell to finish); then `act(page)` (its dict joins
    the info); return (page info, screenshot path)."""
    from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout
    url, token, root = lab
    if cells is not None: _notebook(root/f'{name}.ipynb', cells)
    # start the notebook's kernel through the REST API, so JupyterLab attaches to it instead of asking which to start
    req = urllib.request.Request(f'{url}/api/sessions?token={token}', method='POST', headers={'Content-Type': 'application/json'},
                                 data=json.dumps({'path': f'{name}.ipynb', 'type': 'notebook', 'name': f'{name}.ipynb',
                                                  'kernel': {'name': 'python3'}}).encode())
    urllib.request.urlopen(req, timeout=60).read()
    OUT.mkdir(exist_ok=True)
    shot = OUT/f'{name}.png'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=[
            '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
            '--disable-component-update', '--disable-sync'])
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            # a workspace of its own, reset: only this notebook is open
            page.goto(f'{url}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={token}')
            panel = '.jp-NotebookPanel:not(.lm-mod-hidden)'
            page.wait_for_selector(f'{panel} .jp-Notebook .jp-Cell', timeout=90_000)
            page.wait_for_selector(f'{panel} .jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=90_000)
            # JupyterLab may still ask which kernel to use: accept its preselected Python 3
            dialog = page.locator('.jp-Dialog .jp-mod-accept')
            try: dialog.wait_for(state='visible', timeout=8_000); dialog.click()
            except PlaywrightTimeout: pass
            page.click('.lm-MenuBar-item:has-text("Run")')
            page.click('.lm-Menu-item:has-text("Run All Cells")')
            stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
            error = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'
            t0 = time.time()
            try:
                page.wait_for_selector(f'{wait_for}, {stderr}, {error}', timeout=timeout_s * 1000, state='visible')   # fail fast on errors
                if whole: _all_ran(page, panel, timeout_s - int(time.time() - t0))
                page.locator(f'{wait_for}, {stderr}, {error}').first.scroll_into_view_if_needed()
            finally: page.screenshot(path=str(shot))
            errors = page.locator(stderr).all_inner_texts() + page.locator(error).all_inner_texts()
            info = dict(dropdowns=page.locator('.widget-dropdown').count(), images=page.locator('.jupyter-widgets img').count(),
                        errors=[e for e in errors if 'Error' in e or 'Traceback' in e])
            if act is not None and not info['errors']:
                info.update(act(page))
                page.screenshot(path=str(OUT/f'{name}-after.png'))
        finally: browser.close()
    return info, shot

def test_group_browser_renders(lab):
    "The GroupBrowser of 04_cluster renders in JupyterLab: its dropdowns and the thumbnails of a group."
    cells = ["from pis_nb.synth import make_pis_synth\nfrom pis_nb.cluster import cluster_users, GroupBrowser",
             "make_pis_synth('ps', n_users=2, images_per_user=12, n_source=4, size=64, progress=False)\n"
             "res = cluster_users('ps/personal', k=3, embedder='colour-texture', progress=False)",
             "GroupBrowser(res)"]
    info, shot = run_in_lab(lab, 'group_browser', cells, wait_for='.jupyter-widgets img')
    assert shot.stat().st_size > 10_000, shot
    assert info['errors'] == [], info['errors']
    assert info['dropdowns'] >= 4, info      # user, group, colour by, photo
    assert info['images'] >= 3, info         # thumbnails of group 0 (and its masks)

def test_prediction_inspector_renders(lab):
    "The PredictionInspector of 10_inspector renders in JupyterLab: filters, photo list and the panels of a photo."
    cells = ["import numpy as np\nfrom pis_nb.synth import make_pis_synth\nfrom pis_nb.data import UserDataset\n"
             "from pis_nb.inspector import UserPredictions, PredictionInspector",
             "make_pis_synth('ps1', n_users=1, images_per_user=10, n_source=4, size=64, progress=False)\n"
             "ds = UserDataset('ps1/personal/id1')\nup = UserPredictions.from_dataset(ds)\n"
             "truth = [ds[i]['mask'] if ds[i]['mask'] is not None else np.zeros(ds.sizes[i], np.uint8) for i in range(len(ds))]\n"
             "up.add('truth', truth, [np.full(t.shape, .3, np.float32) for t in truth]).add('nothing', [np.zeros_like(t) for t in truth])",
             "PredictionInspector(up)"]
    info, shot = run_in_lab(lab, 'prediction_inspector', cells, wait_for='.jupyter-widgets .jp-OutputArea-output img')
    assert shot.stat().st_size > 10_000, shot
    assert info['errors'] == [], info['errors']
    assert info['dropdowns'] >= 5, info      # method, versus, group, class, photo
    assert info['images'] >= 1, info         # the panels of the first photo


def _settle(page, read, before, timeout_s: int = 30):
    "Poll `read()` until it differs from `before` (the kernel answered the click) and then holds still for a second (several widgets update one by one); returns it."
    t0, last = time.time(), before
    while time.time() - t0 < timeout_s:
        now = read()
        if now != before and now == last: return now
        last = now
        time.sleep(1)
    return read()

def _click_picture(page, selector: str, fx: float, fy: float) -> None:
    "Click the picture `selector` at the fractions (fx, fy) of its shown size."
    pic = page.locator(selector).first
    pic.scroll_into_view_if_needed()
    box = pic.bounding_box()
    assert box and box['width'] > 50 and box['height'] > 30, box
    pic.click(position={'x': box['width'] * fx, 'y': box['height'] * fy})

def _pick_a_pixel(page) -> dict:
    "Click the inspector's picture at 3/4 across, 1/4 down; returns the pixel boxes' values before and after."
    read = lambda: (page.locator('.pis-pixel-y input').first.input_value(), page.locator('.pis-pixel-x input').first.input_value())
    before = read()
    _click_picture(page, '.pis-picker img, img.pis-picker', 0.75, 0.25)
    size = page.locator('.pis-picker img, img.pis-picker').first.evaluate('e => [e.naturalHeight, e.naturalWidth]')
    return dict(pixel_before=before, pixel_after=_settle(page, read, before), picture=tuple(size))

def _click_the_map(page) -> dict:
    "Click the middle of the browser's map; returns the photo dropdown's value before and after."
    read = lambda: page.locator('.pis-photo select').first.input_value()
    before = read()
    _click_picture(page, '.pis-map img, img.pis-map', 0.45, 0.5)
    return dict(photo_before=before, photo_after=_settle(page, read, before))

def test_prediction_inspector_click(lab):
    "A click on the inspector's photo chooses that pixel: the y/x boxes take the clicked position."
    cells = ["import numpy as np\nfrom pis_nb.synth import make_pis_synth\nfrom pis_nb.data import UserDataset\n"
             "from pis_nb.inspector import UserPredictions, PredictionInspector",
             "make_pis_synth('ps2', n_users=1, images_per_user=6, n_source=4, size=64, progress=False)\n"
             "ds = UserDataset('ps2/personal/id1')\nup = UserPredictions.from_dataset(ds)\n"
             "up.add('zeros', [np.zeros(s, np.uint8) for s in ds.sizes])",
             "ins = PredictionInspector(up); ins"]
    info, shot = run_in_lab(lab, 'inspector_click', cells, wait_for='.pis-picker', act=_pick_a_pixel)
    assert info['errors'] == [], info['errors']
    assert info['pixel_before'] == ('0', '0'), info
    y, x = map(int, info['pixel_after'])
    h, w = info['picture']                          # the picture is the photo at the prediction's size
    assert abs(y - h * 0.25) <= 2 and abs(x - w * 0.75) <= 2, info   # the clicked place, in the photo's pixels

def _copy_kit_notebook(root: Path, name: str) -> None:
    "The kit's notebook `name` and its settings.ini in the lab's folder, so it runs there as in the checkout (its export cell included)."
    kit = Path(__file__).parents[1]
    (root/'nbs').mkdir(exist_ok=True)
    shutil.copy(kit/'settings.ini', root/'settings.ini')
    shutil.copy(kit/'nbs'/f'{name}.ipynb', root/f'{name}.ipynb')

@pytest.mark.parametrize('name,widget,act,check', [
    ('04_cluster', '.pis-map', _click_the_map, lambda i: i['photo_after'] != i['photo_before']),
    ('10_inspector', '.pis-picker', _pick_a_pixel, lambda i: i['pixel_after'] != i['pixel_before']),
])
def test_widget_after_run_all(lab, name, widget, act, check):
    "Run All of the kit's notebook in JupyterLab, then use its demonstrated widget: it still answers (its files were not removed)."
    _copy_kit_notebook(lab[2], name)
    info, shot = run_in_lab(lab, name, None, wait_for=widget, timeout_s=420, act=act, whole=True)
    assert info['errors'] == [], info['errors']
    assert check(info), info

EVIL = '<img src=x onerror=window.__pwned=1>'

def _pwned(page) -> dict:
    "Whether the crafted name ran as markup (it set window.__pwned) and how often it shows as text."
    return dict(pwned=page.evaluate("() => window.__pwned === undefined ? null : window.__pwned"),
                shown=page.get_by_text(EVIL).count())

def test_crafted_names_are_text(lab):
    "A photo named like an HTML tag with a script shows as its name in both widgets; nothing runs (issue: names went into innerHTML)."
    cells = ["from pathlib import Path\nimport numpy as np\nfrom pis_nb.synth import make_pis_synth\n"
             "from pis_nb.cluster import cluster_users, GroupBrowser\nfrom pis_nb.data import UserDataset\n"
             "from pis_nb.inspector import UserPredictions, PredictionInspector",
             "make_pis_synth('ps3', n_users=1, images_per_user=8, n_source=4, size=64, progress=False)\n"
             f"EVIL = {EVIL!r}\nu = Path('ps3/personal/id1'); p = sorted((u/'JPEGImages').glob('*.jpg'))[0]\n"
             "m = u/'SegmentationClass'/(p.stem + '.png')\n"
             "if m.exists(): m.rename(m.with_name(EVIL + '.png'))\n"
             "p.rename(p.with_name(EVIL + '.jpg'))",
             "res = cluster_users('ps3/personal', k=1, embedder='colour-texture', progress=False, write=False)\nGroupBrowser(res)",
             "ds = UserDataset(u); up = UserPredictions.from_dataset(ds).add('zeros', [np.zeros(s, np.uint8) for s in ds.sizes])\n"
             "ins = PredictionInspector(up); ins.show(EVIL); ins"]
    info, shot = run_in_lab(lab, 'crafted_names', cells, wait_for='.pis-picker', whole=True, act=_pwned)
    assert info['errors'] == [], info['errors']
    assert info['pwned'] is None, info                 # no script ran
    assert info['shown'] >= 2, info                     # the name as text: a thumbnail caption and the inspector's line

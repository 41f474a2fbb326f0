"README.md is written by hand (Quarto cannot be installed here) but must say what nbs/index.ipynb says."
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def render_index(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    "README text for the index notebook: markdown cells as they are, code cells fenced as python."
    cells = json.loads(Path(nb_path).read_text(encoding='utf-8'))['cells']
    parts = []
    for c in cells:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return '\n\n'.join(parts) + '\n'

def test_readme_matches_index():
    assert (ROOT/'README.md').read_text(encoding='utf-8') == render_index(), \
        "README.md differs from nbs/index.ipynb: run `python tests/test_readme.py` to rewrite it"

def test_readme_commands_exist():
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    assert 'bash .ci/setup && .venv/bin/pis-nb demo' in text and 'bash tests/run.sh' in text
    for script in ('.ci/setup', 'tests/run.sh', '.ci/run'): assert (ROOT/script).is_file(), script
    # the subcommands the README names are real subcommands
    from pis_nb.cli import _parser
    known = set(_parser()._subparsers._group_actions[0].choices)
    code = '\n'.join(re.findall(r'```sh\n(.*?)```', text, re.S))
    named = set(re.findall(r'pis-nb (\w[\w-]*)', code))
    assert named and named <= known, named - known

def test_readme_fidelity_table_is_the_code_s():
    "The released-recipe table in the README is `fidelity_markdown()`: it cannot drift from RunConfig.released()."
    from pis_nb.released import fidelity_markdown
    assert fidelity_markdown() in (ROOT/'README.md').read_text(encoding='utf-8'), \
        "README's fidelity table differs from pis_nb.released.fidelity_markdown(): paste it into nbs/index.ipynb"

def test_readme_notebooks_exist():
    text = (ROOT/'README.md').read_text(encoding='utf-8')
    named = set(re.findall(r'`(\d\d_\w+\.ipynb)`', text))
    actual = {p.name for p in (ROOT/'nbs').glob('[0-9][0-9]_*.ipynb')}
    assert named == actual, (named, actual)

if __name__ == '__main__':
    (ROOT/'README.md').write_text(render_index(), encoding='utf-8')
    print('wrote README.md')

#!/usr/bin/env bash
# Fetch, on a machine that reaches PyPI, the wheels benchmarks/gpu_check.sh needs on the lent GPU machine (Python 3.12,
# x86-64, no registry) and that its image lacks: fastcore (the kit imports it), nbdev and execnb (the cuda notebook
# cells) with their dependencies. Wheels of packages the GPU image already holds are dropped. They land in ./.whl
# (git-ignored), which the device tool carries: `carry: [".whl"]`, then `bash benchmarks/gpu_check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  'fastcore>=1.14,<2' nbdev==2.4.14 execnb==0.1.16 2>&1 | grep -v "^WARNING: Location" || true
# what the GPU image already has (the device tool's KINDS.md): keep its versions
have='numpy|pandas|torch|packaging|pyyaml|pygments|six|python_dateutil|typing_extensions|urllib3|requests|certifi|idna|charset_normalizer|setuptools|wheel|pip|markdown_it_py|mdurl|rich|jinja2|markupsafe|psutil|filelock|fsspec|sympy|networkx|triton|anyio|h11|httpcore|httpx|build|pyproject_hooks'
for w in .whl/*.whl; do
  name=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
  if [[ "$name" =~ ^($have)$ ]]; then rm "$w"; fi
done
ls .whl; du -sh .whl

#!/usr/bin/env bash
# Run every test of the kit: the notebooks (nbdev_test) and tests/ (pytest), after setting up .venv
# when needed. Extra nbdev flags (e.g. "slow", "cuda") come from $PIS_NB_TEST_FLAGS.
# Prints a final line "tests: N passed, N failed" (notebooks + pytest tests) and exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup --dev || { echo "tests: setup failed"; echo "tests: 0 passed, 1 failed"; exit 1; }
source .venv/bin/activate
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
flags=${PIS_NB_TEST_FLAGS:-}
# the slow cells are the notebooks' heavy demonstrations, which run only when heavy_enabled() (00_core)
[[ " $flags " == *" slow "* ]] && export PIS_NB_HEAVY=1

# --- notebooks, in parallel processes (nbdev_test prints only "Success." or the failures)
mapfile -t nbs < <(cd nbs && ls *.ipynb | grep -v '^[_.]')
echo "tests: running ${#nbs[@]} notebooks with nbdev_test${flags:+ (flags: $flags)}"
nbdev_test --n_workers "${PIS_NB_TEST_WORKERS:-2}" --timing --flags "$flags" 2> >(tee "$out/nb.err" >&2)
nb_rc=$?
nb_failed=0
if [[ $nb_rc -ne 0 ]]; then
  nb_failed=$(awk '/Failed On The Following Notebooks/{f=1; next} f && /^\t/{n++} END{print n+0}' "$out/nb.err")
  [[ $nb_failed -eq 0 ]] && nb_failed=${#nbs[@]}   # nbdev_test itself broke
fi
nb_passed=$(( ${#nbs[@]} - nb_failed ))

# --- pytest (the browser tests need Chromium: Debian's package, installed here when missing and we are root)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "tests: installing Chromium for the browser tests (apt-get install chromium)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$out/apt.log" 2>&1 \
      || { echo "tests: could not install Chromium:"; tail -5 "$out/apt.log"; }
  else
    echo "tests: no Chromium and no root to install it: the browser tests will be skipped"
  fi
fi
echo "tests: running pytest"
python -m pytest tests -q -p no:cacheprovider --junitxml="$out/pytest.xml"
py_rc=$?
read -r py_passed py_failed < <(python - "$out/pytest.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try: root = ET.parse(sys.argv[1]).getroot()
except Exception: print(0, 1); raise SystemExit
suites = [root] if root.tag == 'testsuite' else list(root)
t = sum(int(s.get('tests', 0)) for s in suites); f = sum(int(s.get('failures', 0)) + int(s.get('errors', 0)) for s in suites)
sk = sum(int(s.get('skipped', 0)) for s in suites)
print(t - f - sk, f)
PY
)
# pytest exit 5 means "no tests collected": that is a failure of the suite, not a pass
if [[ $py_rc -ne 0 && $py_failed -eq 0 ]]; then py_failed=1; fi

echo "tests: notebooks ${nb_passed}/${#nbs[@]} passed; pytest ${py_passed} passed, ${py_failed} failed"
echo "tests: $(( nb_passed + py_passed )) passed, $(( nb_failed + py_failed )) failed"
[[ $nb_rc -eq 0 && $py_rc -eq 0 ]]

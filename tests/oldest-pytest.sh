#!/usr/bin/env bash
# The low end of the supported pytest range (pyproject.toml: pytest>=8.0), tested in a virtual
# environment of its own: the hooks, collection, xdist and lock tests, the parts that touch
# pytest's API. The high end is whatever `pip install -e '.[dev]'` resolves today (the main venv).
set -euo pipefail
cd "$(dirname "$0")/.."
oldest=$(sed -n 's/.*"pytest>=\([0-9.]*\),.*/\1/p' pyproject.toml)
python3 -m venv .venv-oldest
.venv-oldest/bin/pip install -q -e '.[dev]' "pytest==${oldest}.*"
.venv-oldest/bin/python -m pytest --version
.venv-oldest/bin/python -m pytest -p no:cacheprovider -q tests/test_inert.py tests/test_no_overlap.py \
  tests/test_code_defined_api.py tests/test_user_errors.py tests/test_experiment_files.py \
  tests/test_experiment_collection.py tests/test_experiment_roundtrip.py tests/test_xdist_once.py

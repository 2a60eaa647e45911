#!/usr/bin/env bash
# The Python package's test suite: a virtualenv under target/py-venv, the test
# dependencies from PyPI (pinned), the package built and installed by maturin, then pytest.
# Exits non-zero on any failure, and when pytest collects no test (its exit code 5).
#
#   bash crates/trove-py/test.sh [pytest args...]
#
# Another interpreter: PYTHON=python3.12 TROVE_PY_VENV=target/py-venv-3.12 bash ...
# (the code tracker differs by version: see src/frames.rs).
# TROVE_PY_BUILD_ONLY=1: stop once the package is built and installed; TROVE_PY_TEST_ONLY=1:
# run pytest on what is installed, without building (`.ci/test` builds the package while
# the Rust suites run, then runs pytest beside the model check, whose cargo holds the
# build directory's lock while it compiles).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${TROVE_PY_VENV:-$root/target/py-venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
python="${PYTHON:-python3}"
start=$(date +%s)

# The CLI binary the shared-store test runs: the one `.ci/test` already built (TROVE_BIN),
# else cargo builds it (once, incrementally after; not when only testing).
if [ -n "${TROVE_BIN:-}" ] && [ -x "$TROVE_BIN" ]; then
    export TROVE_CLI="$TROVE_BIN"
elif [ -n "${TROVE_PY_TEST_ONLY:-}" ]; then
    export TROVE_CLI="$root/target/debug/trove"
else
    cargo build --quiet --manifest-path "$root/Cargo.toml" -p trove-cli
    export TROVE_CLI="$root/target/debug/trove"
fi

if [ -n "${TROVE_PY_TEST_ONLY:-}" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        echo "test.sh: TROVE_PY_TEST_ONLY: nothing is installed in $venv (run without it first)" >&2
        exit 1
    fi
else
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin==1.16.0" "pytest==9.2.0" "numpy==2.4.6" "pandas==3.1.1"
    # maturin develop builds the extension (abi3, CPython 3.9+) and installs the package
    # into the virtualenv; the pure-Python part is installed from python/.
    (cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
        "$venv/bin/maturin" develop --quiet --manifest-path "$here/Cargo.toml")
fi

if [ -n "${TROVE_PY_BUILD_ONLY:-}" ]; then
    echo "test.sh: built and installed after $(( $(date +%s) - start ))s"
    exit 0
fi

set +e
(cd "$here" && "$venv/bin/python" -m pytest -q "$@")
status=$?
set -e
echo "test.sh: pytest exited with $status after $(( $(date +%s) - start ))s"
if [ "$status" -eq 5 ]; then
    echo "test.sh: no test was collected" >&2
    exit 1
fi
exit "$status"

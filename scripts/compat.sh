#!/usr/bin/env bash
# The compatibility run (docs/compatibility.md): the package against an Airflow 3.3.x other than the main
# pinned set's 3.3.2, each version in its own virtualenv .venv-compat-<version> built from the resolved set
# requirements/compat-<version>.txt.
#
#   scripts/compat.sh run [VERSION...]    build/refresh the virtualenv(s), run the unit tests and the
#                                         real-Airflow subset (default: 3.3.0 3.3.1)
#   scripts/compat.sh lock VERSION...     re-resolve requirements/compat-<version>.txt from PyPI
#
# The package is installed with --no-deps: its metadata says apache-airflow>=3.3.2, which must not stop the
# experiment. Everything else comes from the resolved set, which is the main set (requirements/test.txt,
# requirements/constraints.txt) with only Airflow's own pins moved (and what the older Airflow refuses,
# listed in relaxed() below). The real-Airflow tests boot the `airflow` beside the virtualenv's python
# (the harness uses sys.executable's directory), so every component runs the version under test; the
# PostgreSQL and Redis they need are started by the suite itself, as in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"  # the Makefile's
DEFAULT_VERSIONS=(3.3.0 3.3.1)

# The real-Airflow subset: the modules that lean on Airflow's private parts (the supervisor's comms and the
# task state store, the scheduler-side listener and heartbeat-timeout handling, the Execution API).
# COMPAT_TESTS (space-separated paths) replaces it for one run.
SUBSET=(
    tests/airflow/test_checkpoint_airflow.py
    tests/airflow/test_infra_airflow.py
    tests/airflow/test_do_no_harm_airflow.py
)
if [ -n "${COMPAT_TESTS:-}" ]; then read -r -a SUBSET <<< "$COMPAT_TESTS"; fi
# The version-skew tests boot a "stock" virtualenv from the main set (Airflow 3.3.2) beside the Airflow under
# test: that would be a 3.3.2 scheduler on an older version's database, not the version under test.
DESELECT=(
    --deselect tests/airflow/test_do_no_harm_airflow.py::test_version_skew_never_gives_an_application_failure_an_extra_try
)

die() { echo "compat: $*" >&2; exit 1; }

# Pins of the main set that an older Airflow refuses: left to the resolver for that version.
relaxed() {
    case "$1" in
        3.3.0) echo "aiosqlite" ;;  # apache-airflow-core 3.3.0 requires aiosqlite<0.22 (the main set has 0.22.1)
        *) echo "" ;;
    esac
}

venv_for() { echo ".venv-compat-$1"; }

# What a resolved set was made from: the main set's pins and requirements, order and comments aside.
main_set_digest() {
    cat requirements/test.txt requirements/constraints.txt | sed 's/#.*//; s/[[:space:]]*$//' | grep -v '^$' \
        | LC_ALL=C sort | sha256sum | cut -c1-16
}

ensure_venv() {
    local venv="$1"
    if [ ! -x "$venv/bin/uv" ]; then
        "$PYTHON" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
    fi
}

lock() {
    local version="$1" venv in constraints out drop
    venv="$(venv_for "$version")"
    ensure_venv "$venv"
    in="$(mktemp)"; constraints="$(mktemp)"; out="$(mktemp)"
    sed "s/^apache-airflow==.*/apache-airflow==$version/" requirements/test.txt > "$in"
    grep -q "^apache-airflow==$version$" "$in" || die "requirements/test.txt has no apache-airflow== line to move"
    drop="apache-airflow|apache-airflow-core|apache-airflow-task-sdk"
    for p in $(relaxed "$version"); do drop="$drop|$p"; done
    grep -v -E "^($drop)==" requirements/constraints.txt > "$constraints"
    "$venv/bin/uv" pip compile -q --no-annotate --python "$venv/bin/python" \
        --custom-compile-command "scripts/compat.sh lock $version" \
        "$in" -c "$constraints" -o "$out"
    {
        echo "# The compatibility set for Airflow $version (docs/compatibility.md): requirements/test.txt with"
        echo "# apache-airflow==$version, every other pin from requirements/constraints.txt except what Airflow"
        echo "# $version refuses (relaxed: $(relaxed "$version" | sed 's/^$/none/')), resolved for $("$venv/bin/python" -c 'import platform; print("Python", platform.python_version())')."
        echo "# main-set-digest: $(main_set_digest)"
        cat "$out"
    } > "requirements/compat-$version.txt"
    rm -f "$in" "$constraints" "$out"
    echo "compat: wrote requirements/compat-$version.txt"
}

run() {
    local version="$1" venv lockfile rc=0
    venv="$(venv_for "$version")"
    lockfile="requirements/compat-$version.txt"
    [ -f "$lockfile" ] || die "no $lockfile: resolve it first with 'scripts/compat.sh lock $version'"
    grep -q "^# main-set-digest: $(main_set_digest)$" "$lockfile" \
        || die "$lockfile was resolved from another version of requirements/test.txt or requirements/constraints.txt: re-resolve it with 'scripts/compat.sh lock $version' and commit it"
    ensure_venv "$venv"
    "$venv/bin/uv" pip install --python "$venv/bin/python" -q -r "$lockfile"
    "$venv/bin/uv" pip install --python "$venv/bin/python" -q --no-deps -e .
    local have
    have="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
    [ "$have" = "$version" ] || die "$venv has apache-airflow $have, expected $version (remove $venv and run again)"
    echo "compat: Airflow $version ($venv): unit tests"
    "$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider || rc=1
    echo "compat: Airflow $version ($venv): real-Airflow subset: ${SUBSET[*]}"
    "$venv/bin/python" -m pytest "${SUBSET[@]}" "${DESELECT[@]}" -q -p no:cacheprovider --durations=10 || rc=1
    return "$rc"
}

cmd="${1:-run}"; shift || true
case "$cmd" in
    lock)
        [ "$#" -gt 0 ] || die "usage: scripts/compat.sh lock VERSION..."
        for v in "$@"; do lock "$v"; done
        ;;
    run)
        [ "$#" -gt 0 ] || set -- "${DEFAULT_VERSIONS[@]}"
        failed=()
        for v in "$@"; do run "$v" || failed+=("$v"); done
        if [ "${#failed[@]}" -gt 0 ]; then
            echo "compat: failures on Airflow ${failed[*]} (see docs/compatibility.md for the known ones)" >&2
            exit 1
        fi
        echo "compat: all passed on Airflow $*"
        ;;
    *) die "unknown command '$cmd' (run, lock)" ;;
esac

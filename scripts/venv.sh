# Sourced by scripts/serve and scripts/test: the project's own virtual environment in .venv,
# so a system Python that refuses pip (PEP 668, stock Debian) works as well as pyenv's.
# ensure_installed EXTRAS: creates .venv with `python3 -m venv` if missing, then installs the
# project (with EXTRAS, e.g. "test") only when that install is missing or pyproject.toml changed.

VENV=.venv

_python_with_venv() {
    python3 -c 'import ensurepip, venv' 2>/dev/null && return
    # Debian ships venv's pip bootstrap apart, in python3-venv.
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    else
        echo "$0: $(command -v python3) cannot create a virtual environment;" \
             "install python3-venv (apt-get install python3-venv)" >&2
        exit 1
    fi
}

_create_venv() {
    if ! command -v python3 >/dev/null; then
        echo "$0: python3 (3.11 or newer) is not on PATH" >&2
        exit 1
    fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "$0: $(command -v python3) is $(python3 -V 2>&1); 3.11 or newer is needed" >&2
        exit 1
    }
    _python_with_venv
    python3 -m venv --clear "$VENV"
}

ensure_installed() {
    local extras=$1 stamp="$VENV/.installed-${1:-base}" wanted
    # Two runs at once in one checkout install one after the other (the lock is on a file
    # that --clear cannot remove).
    exec 9<pyproject.toml
    flock 9
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || _create_venv
    wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        "$VENV/bin/python" -m pip install --quiet -e ".${extras:+[$extras]}"
        echo "$wanted" >"$stamp"
    fi
    flock -u 9
}

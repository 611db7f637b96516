# Sourced by the two commands: create or reuse .venv at the repository root and install condbook with its pinned needs.
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=$(cat settings.ini setup.py | sha256sum | cut -c1-16)
if [ "$(cat .venv/.condbook-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "installing condbook and its requirements into .venv (first run: several minutes)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2> >(grep -v "^WARNING: Location .* is ignored" >&2) && echo "$stamp" > .venv/.condbook-stamp
fi

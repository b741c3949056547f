# Sourced by the launch scripts: ROOT (the repository) and PYTHON ($PYTHON,
# else `python` when it has torch, else the project's .venv that
# `make test` / `make demo` build).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python
    if ! "$PYTHON" -c 'import torch' 2>/dev/null && [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    fi
fi

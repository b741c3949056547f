# Sourced by the launch scripts: ROOT (the repository) and PYTHON ($PYTHON,
# else `python` when it has torch, else the project's .venv that
# `make test` / `make demo` build), and require_positive_int.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python
    if ! "$PYTHON" -c 'import torch' 2>/dev/null && [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    fi
fi

# require_positive_int NAME VALUE WHAT: stop with one line unless VALUE is a
# whole number >= 1 (torchrun and srun answer 0 or "two" with a traceback
# or a bare AssertionError).
require_positive_int() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$((10#$2))" -lt 1 ]; then
        echo "error: $1 must be a whole number >= 1 ($3), got '$2'" >&2
        exit 2
    fi
}

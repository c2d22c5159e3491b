#!/usr/bin/env bash
# 一锤定音 (one strike settles it): the guided start of SwiftLab in the terminal.
# Pick the task, model, data and method, get the equivalent `swift ...` command, run it, then chat, merge,
# quantize or deploy. Every argument goes to `swift quickstart` (try --help, --lang zh, --yes, --answers FILE).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$repo/.venv/bin/swift" ]]; then
    exec "$repo/.venv/bin/swift" quickstart "$@"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    exec "$repo/.venv/bin/python" -m swift quickstart "$@"
elif command -v swift >/dev/null 2>&1 && swift --help 2>/dev/null | grep -q quickstart; then
    exec swift quickstart "$@"
else
    cd "$repo" 2>/dev/null || true
    exec "${PYTHON:-python3}" -m swift quickstart "$@"
fi

#!/usr/bin/env bash
# The README's test command: install what the suite needs, then run all of it (slow tests too).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
python -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the package and its `avxplain` command
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  # optional system parts for the browser and speech tests (skipped with a reason elsewhere)
  missing=""
  command -v chromium >/dev/null || missing="$missing chromium"
  command -v espeak-ng >/dev/null || missing="$missing espeak-ng"
  if [ -n "$missing" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "warning: could not install$missing; tests that need them will skip" >&2
  fi
fi
exec python -m pytest -q -ra "$@"

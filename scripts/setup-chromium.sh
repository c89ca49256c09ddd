#!/bin/sh
# Installs headless Chromium (Debian's `chromium` package) for the browser tests: `lineage report`'s page
# opened without console errors, and later the `--to web` export page. The tests find the browser through
# LINEAGE_CHROMIUM or the usual names on PATH (packages/cli/src/test-browser.ts).
#
# Idempotent: when a chromium is already on PATH it does nothing. It never fails its caller: when it cannot
# install (not Debian, not root, no network) it says why and exits 0, and the browser tests then report
# themselves as skipped with the reason.
#
# Usage: sh scripts/setup-chromium.sh        (LINEAGE_SKIP_CHROMIUM_SETUP=1 skips it)

say() { echo "setup-chromium: $*"; }

if [ "${LINEAGE_SKIP_CHROMIUM_SETUP:-}" = "1" ]; then
  say "skipped (LINEAGE_SKIP_CHROMIUM_SETUP=1)"
  exit 0
fi

for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then
    say "$b is already installed ($("$b" --version 2>/dev/null | head -n 1)); nothing to do"
    exit 0
  fi
done

. "$(dirname "$0")/apt-lib.sh"
apt_prepare chromium || exit 0
apt_update "the browser tests" || exit 0
apt_install "the browser tests" chromium fonts-dejavu-core || exit 0

if command -v chromium >/dev/null 2>&1; then
  say "done: $(chromium --version 2>/dev/null | head -n 1)"
else
  say "installed, but no chromium on PATH; the browser tests will be skipped"
fi
exit 0

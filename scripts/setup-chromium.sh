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

if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/os-release ]; then
  say "no chromium and no apt-get here; install Chromium to run the browser tests"
  exit 0
fi

# shellcheck disable=SC1091
. /etc/os-release
if [ "${ID:-}" != "debian" ] && [ "${ID:-}" != "ubuntu" ]; then
  say "no chromium; this script installs it on Debian only (found ${ID:-unknown})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    say "no chromium and not root (and no password-less sudo): run as root to install it"
    exit 0
  fi
fi

APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3"

say "apt-get update"
if ! $APT update -qq >/dev/null 2>&1; then
  say "apt-get update failed (no network?); the browser tests will be skipped"
  exit 0
fi

say "installing chromium"
if ! $APT install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
  say "apt-get install failed; the browser tests will be skipped"
  exit 0
fi

if command -v chromium >/dev/null 2>&1; then
  say "done: $(chromium --version 2>/dev/null | head -n 1)"
else
  say "installed, but no chromium on PATH; the browser tests will be skipped"
fi
exit 0

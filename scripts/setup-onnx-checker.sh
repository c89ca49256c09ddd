#!/bin/sh
# Makes the `onnx` Python package available for the test that runs onnx.checker on an exported model
# (packages/onnx/src/export-dir.test.ts). Installs Debian's python3-onnx (for /usr/bin/python3).
#
# Idempotent: does nothing when some python3 already imports onnx. It never fails its caller: when it cannot
# install (not Debian, not root, no network) it says why and exits 0, and the test reports itself skipped.
#
# Usage: sh scripts/setup-onnx-checker.sh        (LINEAGE_SKIP_ONNX_CHECKER_SETUP=1 skips it)

say() { echo "setup-onnx-checker: $*"; }

if [ "${LINEAGE_SKIP_ONNX_CHECKER_SETUP:-}" = "1" ]; then
  say "skipped (LINEAGE_SKIP_ONNX_CHECKER_SETUP=1)"
  exit 0
fi

for py in python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import onnx' >/dev/null 2>&1; then
    say "$py already imports onnx; nothing to do"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get here; install the onnx Python package to run the onnx.checker test"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    say "not root (and no password-less sudo): run as root to install python3-onnx"
    exit 0
  fi
fi

APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3"
if ! $APT install -y -qq --no-install-recommends python3-onnx >/dev/null 2>&1; then
  say "apt-get update"
  $APT update -qq >/dev/null 2>&1 || { say "apt-get update failed (no network?); the checker test will be skipped"; exit 0; }
  if ! $APT install -y -qq --no-install-recommends python3-onnx >/dev/null 2>&1; then
    say "apt-get install python3-onnx failed; the checker test will be skipped"
    exit 0
  fi
fi
say "done: $(/usr/bin/python3 -c 'import onnx; print("onnx", onnx.__version__)' 2>&1)"
exit 0

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

. "$(dirname "$0")/apt-lib.sh"
apt_prepare python3-onnx || exit 0
# without an update first when the package lists are fresh enough
if ! $APT install -y -qq --no-install-recommends python3-onnx >/dev/null 2>&1; then
  apt_update "the checker test" || exit 0
  apt_install "the checker test" python3-onnx || exit 0
fi
say "done: $(/usr/bin/python3 -c 'import onnx; print("onnx", onnx.__version__)' 2>&1)"
exit 0

#!/bin/sh
# Makes an OpenGL ES device available for the WebGPU tests that run Dawn's OpenGL ES backend (the `webgpu`
# package, `create(['backend=opengles'])`, EGL_PLATFORM=surfaceless, compatibility feature level). On a
# machine without a GPU that is Mesa's llvmpipe behind EGL: Debian bookworm's stock Mesa 22.3 works.
#
# Idempotent: when EGL, GLES and a Mesa driver are present it does nothing. It never fails its caller: when
# it cannot install (not Debian, not root, no network) it says why and exits 0, and the GLES tests then
# report themselves as skipped with the reason.
#
# Usage: sh scripts/setup-gles.sh        (LINEAGE_SKIP_GLES_SETUP=1 skips it)

say() { echo "setup-gles: $*"; }

if [ "${LINEAGE_SKIP_GLES_SETUP:-}" = "1" ]; then
  say "skipped (LINEAGE_SKIP_GLES_SETUP=1)"
  exit 0
fi

if [ "$(uname -s)" != "Linux" ]; then
  say "not Linux; nothing to do (Dawn uses Metal/D3D12 there)"
  exit 0
fi

has_lib() {
  ldconfig -p 2>/dev/null | grep -q "$1" && return 0
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    [ -e "$d/$1" ] && return 0
  done
  return 1
}

# A Mesa DRI driver (llvmpipe lives in swrast_dri.so or, in newer Mesa, libgallium).
has_driver() {
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib; do
    ls "$d"/dri/swrast_dri.so "$d"/dri/kms_swrast_dri.so "$d"/libgallium*.so 2>/dev/null | grep -q . && return 0
  done
  return 1
}

ready() {
  has_lib 'libEGL.so.1' && has_lib 'libEGL_mesa.so.0' && has_lib 'libGLESv2.so.2' && has_driver
}

if ready; then
  say "EGL, OpenGL ES and a Mesa driver are already available; nothing to do"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/os-release ]; then
  say "no EGL/GLES and no apt-get here; install Mesa's EGL and GLES libraries to run the GLES tests"
  exit 0
fi

# shellcheck disable=SC1091
. /etc/os-release
if [ "${ID:-}" != "debian" ] && [ "${ID_LIKE:-}" != "debian" ]; then
  say "no EGL/GLES; this script installs them on Debian-like systems only (found ${ID:-unknown})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    say "no EGL/GLES and not root (and no password-less sudo): run as root to install them"
    exit 0
  fi
fi

APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3"

say "apt-get update"
if ! $APT update -qq >/dev/null 2>&1; then
  say "apt-get update failed (no network?); the GLES tests will be skipped"
  exit 0
fi

say "installing libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri"
if ! $APT install -y -qq --no-install-recommends libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri >/dev/null 2>&1; then
  say "apt-get install failed; the GLES tests will be skipped"
  exit 0
fi

if ready; then
  say "done: EGL and OpenGL ES available"
else
  say "installed the packages, but EGL/GLES is still incomplete; the GLES tests will be skipped"
fi
exit 0

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

. "$(dirname "$0")/apt-lib.sh"
apt_prepare "EGL/GLES" || exit 0
apt_update "the GLES tests" || exit 0
apt_install "the GLES tests" libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri || exit 0

if ready; then
  say "done: EGL and OpenGL ES available"
else
  say "installed the packages, but EGL/GLES is still incomplete; the GLES tests will be skipped"
fi
exit 0

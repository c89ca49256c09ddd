#!/bin/sh
# Makes a Vulkan device available for the WebGPU tests (onnxruntime's WebGPU provider and Dawn both run on
# Vulkan on Linux). On a machine without a GPU this installs Mesa's lavapipe, a CPU Vulkan implementation
# (mesa-vulkan-drivers 25 from Debian bookworm-backports; bookworm's own Mesa 22 is too old for Dawn).
#
# Idempotent: when a Vulkan driver is already present it does nothing. It never fails its caller: when it
# cannot install (not Debian, not root, no network) it says why and exits 0, and the WebGPU tests then
# report themselves as skipped with the reason.
#
# Usage: sh scripts/setup-vulkan.sh        (LINEAGE_SKIP_VULKAN_SETUP=1 skips it)

say() { echo "setup-vulkan: $*"; }

if [ "${LINEAGE_SKIP_VULKAN_SETUP:-}" = "1" ]; then
  say "skipped (LINEAGE_SKIP_VULKAN_SETUP=1)"
  exit 0
fi

if [ "$(uname -s)" != "Linux" ]; then
  say "not Linux; nothing to do (WebGPU uses Metal/D3D12 there)"
  exit 0
fi

has_loader() {
  ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' ||
    [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libvulkan.so.1 ]
}

# A driver manifest (ICD) for any Vulkan implementation: lavapipe, a GPU driver, or one named by the env.
icd_list() {
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -d "$d" ] && ls "$d"/*.json 2>/dev/null
  done
  [ -n "${VK_ICD_FILENAMES:-}" ] && echo "$VK_ICD_FILENAMES"
  [ -n "${VK_DRIVER_FILES:-}" ] && echo "$VK_DRIVER_FILES"
}

has_device() {
  if command -v vulkaninfo >/dev/null 2>&1; then
    vulkaninfo --summary 2>/dev/null | grep -q 'deviceName'
    return $?
  fi
  has_loader && [ -n "$(icd_list)" ]
}

lavapipe_version() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null
}

if has_device; then
  v=$(lavapipe_version)
  say "a Vulkan device is already available${v:+ (mesa-vulkan-drivers $v)}; nothing to do"
  exit 0
fi

. "$(dirname "$0")/apt-lib.sh"
apt_prepare "Vulkan device" || exit 0
# lavapipe from bookworm-backports is Debian's; Ubuntu and others: mesa-vulkan-drivers ≥ 25 and libvulkan1
if [ "${ID:-}" != "debian" ]; then
  say "no Vulkan device; this script installs lavapipe on Debian only (found ${ID:-unknown}): install mesa-vulkan-drivers ≥ 25 and libvulkan1"
  exit 0
fi
CODENAME="${VERSION_CODENAME:-bookworm}"
BACKPORTS="${CODENAME}-backports"
TARGET=""

if [ "$CODENAME" = "bookworm" ]; then
  if ! grep -rqs "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding $BACKPORTS to the apt sources (/etc/apt/sources.list.d/$BACKPORTS.sources)"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$BACKPORTS" | $SUDO tee "/etc/apt/sources.list.d/$BACKPORTS.sources" >/dev/null ||
      { say "could not write the apt source; giving up"; exit 0; }
  fi
  TARGET="-t $BACKPORTS"
fi

apt_update "the WebGPU tests" || exit 0

say "installing mesa-vulkan-drivers (lavapipe) and libvulkan1${TARGET:+ from $BACKPORTS}"
# shellcheck disable=SC2086
if ! $APT install -y -qq --no-install-recommends $TARGET mesa-vulkan-drivers libvulkan1 vulkan-tools >/dev/null 2>&1; then
  # vulkan-tools (vulkaninfo) is only a diagnostic: retry without it.
  # shellcheck disable=SC2086
  if ! $APT install -y -qq --no-install-recommends $TARGET mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    say "apt-get install failed; the WebGPU tests will be skipped"
    exit 0
  fi
fi

if has_device; then
  say "done: Vulkan device available (mesa-vulkan-drivers $(lavapipe_version))"
else
  say "installed mesa-vulkan-drivers $(lavapipe_version), but no Vulkan device is visible; the WebGPU tests will be skipped"
fi
exit 0

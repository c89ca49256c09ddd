# Sourced by the setup-*.sh scripts: the checks and apt-get calls they share. The caller defines `say`.
# Each function says why it cannot go on and returns non-zero; the caller then exits 0, since these
# scripts never fail their caller (the tests that need the package report themselves skipped instead).

# apt_prepare <what is missing>: a Debian-like system with apt-get, run as root or with password-less
# sudo; sets APT (and the variables of /etc/os-release, e.g. VERSION_CODENAME).
apt_prepare() {
  if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/os-release ]; then
    say "no $1 and no apt-get here; install it to run the tests that need it"
    return 1
  fi
  # shellcheck disable=SC1091
  . /etc/os-release
  case "${ID:-} ${ID_LIKE:-}" in
    *debian* | *ubuntu*) ;;
    *)
      say "no $1; this script installs it on Debian-like systems only (found ${ID:-unknown})"
      return 1
      ;;
  esac
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO="sudo -n"
    else
      say "no $1 and not root (and no password-less sudo): run as root to install it"
      return 1
    fi
  fi
  APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3"
}

# apt_update <the tests that need it>
apt_update() {
  say "apt-get update"
  $APT update -qq >/dev/null 2>&1 && return 0
  say "apt-get update failed (no network?); $1 will be skipped"
  return 1
}

# apt_install <the tests that need it> [apt-get install options and] <packages...>
apt_install() {
  tests=$1
  shift
  say "installing $*"
  # shellcheck disable=SC2086
  $APT install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
  say "apt-get install failed; $tests will be skipped"
  return 1
}

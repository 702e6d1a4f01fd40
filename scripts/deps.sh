# Sourced by scripts/run and scripts/test: installs the Debian 12 packages Postern needs
# (only what is missing), then configures and builds the tree with ccache.
# Usage: postern_install_deps [extra packages...]; postern_build [build dir] [cmake -D options...]
# POSTERN_TARGETS (optional): build only these targets (scripts/run: "programs").

POSTERN_PACKAGES=(build-essential cmake ccache pkg-config libpoco-dev libssl-dev libpq-dev libldap-dev
  libboost-test-dev libargon2-dev libcrypt-dev libidn2-dev libunistring-dev openssl python3 swaks libnet-ssleay-perl curl)
# swaks needs libnet-ssleay-perl for --tls / --tlsc (a recommends, not a dependency, and
# installs here run without recommends).

postern_install_deps() {
  local wanted=("${POSTERN_PACKAGES[@]}" "$@") missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "postern: installing missing packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      echo "postern: please install as root: apt-get install ${missing[*]}" >&2; return 1
    fi
  fi
  # Postfix (a peer in the e2e tests): "No configuration" leaves the system instance
  # unconfigured, so it never starts or takes port 25; the tests run private instances.
  case " ${missing[*]} " in *" postfix "*)
    echo "postfix postfix/main_mailer_type select No configuration" | "${sudo[@]}" debconf-set-selections ;;
  esac
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

postern_build() {
  local dir=${1:-build}
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(pwd)}
  export CCACHE_NOHASHDIR=1
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${@:2}" >/dev/null
  local targets=()
  [ -n "${POSTERN_TARGETS:-}" ] && targets=(--target ${POSTERN_TARGETS})
  cmake --build "$dir" -j"${JOBS:-$(nproc)}" "${targets[@]}"
}

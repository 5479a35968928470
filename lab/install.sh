#!/usr/bin/env bash
# lab/install.sh — prepare a fresh Debian (12) machine to build and test rvs.
#
# Idempotent and unattended; prints nothing when everything is already in place.
#   - Debian packages: DPDK 22.11 (libdpdk-dev, dpdk), clang/libclang (bindgen),
#     pkg-config, iproute2, ethtool, python3, curl, ping, tcpdump (debugging),
#     prometheus (promtool and a Prometheus server for the metrics tests),
#     tmux (a terminal for rvsctl top's test), keepalived (VRRP of the HA lab).
#     `apt-get update` + install run only when something is missing.
#   - pytest for whatever `python3` is on PATH (may be a pyenv Python, not
#     Debian's): pip first, Debian's python3-pytest as fallback (PEP 668).
#   - Hugepages: at least 512 x 2 MB reserved, hugetlbfs mounted on /dev/hugepages.
#   - Checks that a Rust toolchain (cargo) is reachable; it cannot be installed
#     from here (rustup needs the internet), so a missing one is an error.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

MIN_HUGEPAGES=${MIN_HUGEPAGES:-512}
PACKAGES=(libdpdk-dev dpdk libclang-dev clang pkg-config iproute2 ethtool
          python3 curl iputils-ping tcpdump prometheus tmux keepalived)

log() { echo "install.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# --- Debian packages --------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    aptlog=$(mktemp)
    if ! { apt-get update -q && \
           apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1; then
        cat "$aptlog" >&2; rm -f "$aptlog"; die "apt-get failed"
    fi
    rm -f "$aptlog"
fi

# --- pytest ------------------------------------------------------------------
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    piplog=$(mktemp)
    if ! python3 -m pip install -q --disable-pip-version-check \
            --root-user-action=ignore pytest >"$piplog" 2>&1 &&
       ! python3 -m pip install -q --disable-pip-version-check pytest >>"$piplog" 2>&1; then
        # Debian's own python3 refuses pip installs (externally managed).
        apt-get install -y -q --no-install-recommends python3-pytest >>"$piplog" 2>&1 || true
    fi
    if ! python3 -c 'import pytest' >/dev/null 2>&1; then
        cat "$piplog" >&2; rm -f "$piplog"; die "could not install pytest for $(command -v python3)"
    fi
    rm -f "$piplog"
fi

# --- hugepages ---------------------------------------------------------------
nr=$(cat /proc/sys/vm/nr_hugepages)
if [ "$nr" -lt "$MIN_HUGEPAGES" ]; then
    echo "$MIN_HUGEPAGES" > /proc/sys/vm/nr_hugepages
    nr=$(cat /proc/sys/vm/nr_hugepages)
    [ "$nr" -ge "$MIN_HUGEPAGES" ] ||
        log "warning: only $nr hugepages could be reserved (wanted $MIN_HUGEPAGES)"
fi
if ! awk '$3 == "hugetlbfs" && $2 == "/dev/hugepages" {f=1} END {exit !f}' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages
fi

# --- Rust toolchain ----------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    die "cargo not found: install Rust >= 1.85 with rustup (https://rustup.rs)"
fi
exit 0

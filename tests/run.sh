#!/usr/bin/env bash
# Runs every haldir test on a Debian machine (as root for the namespace tests).
# Installs the Debian packages the tests use when they are missing, then runs
# the workspace's tests. This is the README's test command; .ci/run calls it.
set -euo pipefail

cd "$(dirname "$0")/.."

# keepalived: the reference VRRP peer; nftables: lossy links; iproute2:
# namespaces, veths, bridges; tcpdump: debugging captures; stress-ng: CPU load.
PACKAGES=(keepalived nftables iproute2 tcpdump iputils-ping stress-ng)

say() { printf '==> %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    say "WARNING: not root: the network-namespace tests will print SKIPPED"
fi

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        say "missing packages: ${missing[*]} (run as root to install them)"
        exit 1
    fi
    say "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    say "all test packages present: ${PACKAGES[*]}"
fi

say "toolchain: $(cargo --version), $(rustc --version)"
say "running: cargo test --workspace"
cargo test --workspace -- --test-threads=2

# The kernel tests (tests/kernel_*.rs: IPVS client, reconciler, direct routing end to end)
# need a kernel with IPVS, which this host lacks: tests/vm/run.sh boots Debian's kernel in a
# virtme-ng VM (one boot, software emulation, ~3 min) and runs them there. Above, on the
# host, the same tests printed SKIPPED.
if [[ $(id -u) -eq 0 ]]; then
    say "running: bash tests/vm/run.sh (kernel tests in a VM)"
    bash tests/vm/run.sh
else
    say "SKIPPED the kernel tests in the VM: tests/vm/run.sh needs root"
fi

#!/usr/bin/env bash
# Runs every haldir test on a Debian machine (as root for the namespace tests).
# Installs the Debian packages the tests use when they are missing, then runs
# the workspace's tests. This is the README's test command; .ci/run calls it.
set -euo pipefail

cd "$(dirname "$0")/.."

# keepalived: the reference VRRP peer; nftables: lossy links; iproute2:
# namespaces, veths, bridges; tcpdump: debugging captures; stress-ng: CPU load;
# man-db: tests/package.rs renders the packaged man page (dpkg-dev is not needed: dpkg-deb);
# frr: the BGP speaker (zebra, bgpd, bfdd) of the active-active tests (tests/announce_bgp.rs).
PACKAGES=(keepalived nftables iproute2 tcpdump iputils-ping stress-ng man-db frr)

say() { printf '==> %s\n' "$*"; }

# Without root every namespace and kernel test would print SKIPPED and pass: a run that
# proves nothing. That is an error unless asked for (HALDIR_ALLOW_SKIP=1, e.g. a quick
# unit-test pass on a laptop).
if [[ $(id -u) -ne 0 ]]; then
    if [[ ${HALDIR_ALLOW_SKIP:-0} != 1 ]]; then
        printf '\n!!!!!!!! tests/run.sh must run as root: the network-namespace and kernel tests need it !!!!!!!!\n' >&2
        printf '!!!!!!!! (HALDIR_ALLOW_SKIP=1 runs the rest and lets them print SKIPPED) !!!!!!!!\n\n' >&2
        exit 1
    fi
    say "WARNING: not root (HALDIR_ALLOW_SKIP=1): the network-namespace tests will print SKIPPED"
fi

# Everything the tests print also goes to a log, so the run can end with the count of tests
# run and skipped.
LOG=$(mktemp /tmp/haldir-tests.XXXXXX)
trap 'rm -f "$LOG"' EXIT

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
# haldir started as root runs as the system user haldir once up (as the package creates
# it); the VM sees this machine's /etc read-only, so it is created here.
if [[ $(id -u) -eq 0 ]] && ! getent passwd haldir >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin haldir
fi
say "running: cargo test --workspace"
set +e
cargo test --workspace -- --test-threads=2 2>&1 | tee "$LOG"
host_rc=${PIPESTATUS[0]}
set -e

# The kernel tests (tests/kernel_*.rs: IPVS client, reconciler, direct routing end to end)
# need a kernel with IPVS, which this host lacks: tests/vm/run.sh boots Debian's kernel in a
# virtme-ng VM (one boot, software emulation, ~3 min) and runs them there. Above, on the
# host, the same tests printed SKIPPED.
vm_rc=0
if ((host_rc == 0)) && [[ $(id -u) -eq 0 ]]; then
    say "running: bash tests/vm/run.sh (kernel tests in a VM)"
    set +e
    bash tests/vm/run.sh 2>&1 | tee -a "$LOG"
    vm_rc=${PIPESTATUS[0]}
    set -e
elif ((host_rc == 0)); then
    say "SKIPPED the kernel tests in the VM: tests/vm/run.sh needs root"
fi

# The count, from every test binary's closing line (host and VM) and every loud SKIPPED
# line. On the host the kernel tests print SKIPPED and then run in the VM: those are
# counted as run there, not as skipped.
summary() {
    awk '
        /^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i) ~ /^passed;?$/) passed += $(i - 1)
                if ($(i) ~ /^failed;?$/) failed += $(i - 1)
                if ($(i) ~ /^ignored;?$/) ignored += $(i - 1)
            }
        }
        /SKIPPED/ && /needs the IPVS kernel/ { in_vm++ ; next }
        /SKIPPED/ { skipped++ }
        END {
            printf "==> %d test binaries reported; %d ignored; %d host skips of kernel tests (run in the VM)\n", binaries, ignored, in_vm
            printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped
        }
        /^test result:/ { binaries++ }
    ' "$LOG"
}
if ((host_rc != 0)); then
    say "FAILED: cargo test --workspace exited $host_rc (the VM tests were not run)"
fi
if ((vm_rc != 0)); then
    say "FAILED: tests/vm/run.sh exited $vm_rc"
fi
summary
if ((host_rc != 0 || vm_rc != 0)); then
    exit 1
fi

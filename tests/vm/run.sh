#!/usr/bin/env bash
# Runs haldir's kernel tests (tests/kernel_*.rs) inside a VM whose kernel has IPVS.
#
#   bash tests/vm/run.sh [ARGS...]      # as root; ARGS go to every test binary (a name filter)
#   bash tests/vm/run.sh --bench [NAME] [ARGS...]  # instead: the VM benchmarks (bench/ipvs_bulk.rs,
#                                                  # bench/scale.rs), or the one named
#   HALDIR_VM_BINARIES="target/debug/deps/kernel_x-HASH ..." bash tests/vm/run.sh   # no build
#   bash tests/vm/run.sh --lab BINARY [ARGS...]   # instead: `BINARY ARGS` in the VM, live
#                                                 # (what the demo, haldir-lab, does without IPVS)
#
# The host kernel of the development and CI machines has no IPVS, so this script:
#   1. installs what it needs when absent: qemu-system-x86, Debian's linux-image-amd64 (a
#      kernel with the ip_vs modules), ipvsadm, nftables, iproute2, and virtme-ng in a venv
#      at /opt/vng (pinned);
#   2. builds the kernel test binaries on the host (`cargo test --no-run`);
#   3. boots that kernel ONCE with virtme-ng (software emulation: nested KVM fails on these
#      machines), with the host's root file system visible read-only and a results directory
#      writable; inside, it loads ip_vs and every scheduler module the kernel ships, then runs
#      each kernel test binary with --test-threads=1 and HALDIR_IN_VM=1;
#   4. prints every binary's output here and exits non-zero if any failed, or, loudly, if the
#      VM did not boot or did not finish.
# Outside the VM the same tests print "SKIPPED ...: needs the IPVS kernel" and pass.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$(pwd)

VNG_VERSION=1.42            # virtme-ng, from PyPI; the version this rig was proven with
VNG_VENV=/opt/vng
VM_TIMEOUT=${HALDIR_VM_TIMEOUT:-1800}   # seconds for boot + all tests, then the VM is killed
PACKAGES=(qemu-system-x86 linux-image-amd64 ipvsadm nftables iproute2 busybox-static python3-venv)
# Every IPVS scheduler that Linux has had; each one the kernel ships is loaded in the VM.
SCHEDULERS=(rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)

# --bench: build and run the VM benchmarks (cargo bench targets in VM_BENCHES) instead of
# the kernel tests; everything else (packages, kernel, VM, report) is the same.
VM_BENCHES=(ipvs_bulk scale)
MODE=test
if [[ ${1:-} == --bench ]]; then
    MODE=bench
    shift
    # The scale benchmark runs keepalived beside haldir on the same file.
    PACKAGES+=(keepalived)
    # `--bench NAME ...`: that benchmark alone.
    for bench in "${VM_BENCHES[@]}"; do
        if [[ ${1:-} == "$bench" ]]; then
            VM_BENCHES=("$bench")
            shift
            break
        fi
    done
fi
# --lab BINARY ARGS...: no build; run one host binary (the demo: `haldir-lab --haldir PATH ...`) inside
# the VM with its output streamed here, and exit with its status.
LAB_BINARY=
if [[ ${1:-} == --lab ]]; then
    MODE=lab
    shift
    LAB_BINARY=${1:-}
    shift || true
fi

say() { printf '==> vm: %s\n' "$*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
die() {
    printf '\n!!!!!!!! vm: %s !!!!!!!!\n\n' "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, boots the VM)"
# haldir started as root runs as the system user haldir once up; the VM sees this
# machine's /etc read-only, so the user is created here when missing.
if ! getent passwd haldir >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin haldir
fi
if [[ $MODE == lab ]]; then
    [[ -n $LAB_BINARY && -x $LAB_BINARY ]] || die "--lab needs an executable binary, got '${LAB_BINARY}'"
    LAB_BINARY=$(realpath "$LAB_BINARY")
fi
start_all=$(date +%s.%N)

# --- 1. what the rig needs ------------------------------------------------------------------
missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    say "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi
if ! "$VNG_VENV/bin/vng" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
    say "installing virtme-ng $VNG_VERSION into $VNG_VENV"
    python3 -m venv "$VNG_VENV" || die "python3 -m venv $VNG_VENV failed"
    "$VNG_VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION" || die "pip install virtme-ng failed"
fi

# The newest installed Debian kernel that ships the ip_vs module (never hard-coded: Debian
# moves linux-image-amd64 forward).
KVER=
for image in $(ls /boot/vmlinuz-* 2>/dev/null | sort -V -r); do
    version=${image#/boot/vmlinuz-}
    if compgen -G "/lib/modules/$version/kernel/net/netfilter/ipvs/ip_vs.ko*" >/dev/null; then
        KVER=$version
        break
    fi
done
[[ -n $KVER ]] || die "no /boot/vmlinuz-* with ip_vs modules (is linux-image-amd64 installed?)"
say "kernel $KVER, virtme-ng $("$VNG_VENV/bin/vng" --version 2>/dev/null | head -1)"

# --- 2. the test binaries, built on the host ------------------------------------------------
# Kernel tests are the integration test targets named kernel_* in any workspace package.
# Their executables, from cargo's JSON messages:
# (With --bench: the bench targets named in argv[3:].)
EXECUTABLES_PY='
import json, sys
kind = sys.argv[2] if len(sys.argv) > 2 else "test"
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target") or {}
    if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
            and kind in target.get("kind", [])
            and (target.get("name", "") in sys.argv[3:] if kind == "bench"
                 else target.get("name", "").startswith("kernel_"))):
        print(msg["executable"])
'
if [[ $MODE == lab ]]; then
    BINARIES=()
elif [[ -n ${HALDIR_VM_BINARIES:-} ]]; then
    # Debugging knob: run these already built binaries instead of building.
    read -r -d "" -a BINARIES <<<"$HALDIR_VM_BINARIES" || true
elif [[ $MODE == bench ]]; then
    say "building the VM benchmarks: cargo bench --no-run ${VM_BENCHES[*]/#/--bench }"
    start_build=$(date +%s.%N)
    build_json=$(mktemp)
    trap 'rm -f "$build_json"' EXIT
    cargo bench --no-run ${VM_BENCHES[*]/#/--bench } --message-format=json-render-diagnostics \
        >"$build_json" || die "building the benchmarks failed"
    mapfile -t BINARIES < <(python3 -c "$EXECUTABLES_PY" "$build_json" bench "${VM_BENCHES[@]}")
    ((${#BINARIES[@]})) || die "no benchmark binaries were built"
    say "built ${#BINARIES[@]} benchmark binaries in $(since "$start_build") s"
else
    say "building the kernel test binaries: cargo test --workspace --no-run --test 'kernel_*'"
    start_build=$(date +%s.%N)
    build_json=$(mktemp)
    trap 'rm -f "$build_json"' EXIT
    cargo test --workspace --no-run --test 'kernel_*' --message-format=json-render-diagnostics \
        >"$build_json" || die "building the kernel tests failed"
    mapfile -t BINARIES < <(python3 -c "$EXECUTABLES_PY" "$build_json")
    ((${#BINARIES[@]})) || die "no kernel_* test binaries were built"
    say "built ${#BINARIES[@]} kernel test binaries in $(since "$start_build") s"
fi

# --- 3. one VM boot runs them all -----------------------------------------------------------
# One directory per run, so two runs at once (two sessions, or CI beside a
# developer) cannot wipe each other's results.
mkdir -p "$REPO/target"
RESULTS=$(mktemp -d "$REPO/target/vm-results.XXXXXX")
if ((${#BINARIES[@]})); then printf '%s\n' "${BINARIES[@]}"; fi >"$RESULTS/binaries"
# The Debian package for tests/kernel_package.rs, built here at native speed (in the VM,
# stripping and compressing the binary takes minutes of software emulation).
VM_DEB=
if [[ $MODE == test ]] && [[ -x target/debug/haldir ]] && command -v dpkg-deb >/dev/null; then
    if VM_DEB=$(HALDIR_BIN=target/debug/haldir HALDIR_DEB_COMPRESSION=gzip \
        bash packaging/build-deb.sh "$RESULTS/deb" 2>"$RESULTS/build-deb.err" | tail -n 1); then
        say "built the package for the VM: $VM_DEB"
    else
        say "WARNING: building the package failed ($(tail -n 1 "$RESULTS/build-deb.err")); kernel_package builds its own"
        VM_DEB=
    fi
fi
{ printf 'ARGS=('; if (($#)); then printf '%q ' "$@"; fi; echo ')'; } >"$RESULTS/args.sh"
cat >"$RESULTS/inner.sh" <<EOF
#!/bin/bash
# Runs inside the VM (generated by tests/vm/run.sh).
set -u
R=$RESULTS
cut -d' ' -f1 /proc/uptime >"\$R/booted_at"
uname -r >"\$R/kernel"
loaded=()
modprobe ip_vs 2>"\$R/modprobe.err" || { echo "modprobe ip_vs failed" >>"\$R/modprobe.err"; }
for s in ${SCHEDULERS[*]}; do
    # Only the ones this kernel ships (twos is newer than 6.1, for one).
    compgen -G "/lib/modules/\$(uname -r)/kernel/net/netfilter/ipvs/ip_vs_\$s.ko*" >/dev/null || continue
    if modprobe "ip_vs_\$s" 2>>"\$R/modprobe.err"; then loaded+=("\$s"); fi
done
echo "\${loaded[*]}" >"\$R/schedulers"
export HALDIR_IN_VM=1 HALDIR_VM_SCHEDULERS="\${loaded[*]}" RUST_BACKTRACE=1 TMPDIR=/tmp
export HALDIR_VM_DEB="$VM_DEB"
source "\$R/args.sh"
cd $REPO
if [[ $MODE == lab ]]; then
    "$LAB_BINARY" "\${ARGS[@]}" </dev/null 2>&1 | tee "\$R/lab.out"
    echo "\${PIPESTATUS[0]}" >"\$R/lab.rc"
fi
while read -r bin; do
    name=\$(basename "\$bin")
    start=\$(cut -d' ' -f1 /proc/uptime)
    "\$bin" --test-threads=1 "\${ARGS[@]}" >"\$R/\$name.out" 2>&1 </dev/null
    echo \$? >"\$R/\$name.rc"
    end=\$(cut -d' ' -f1 /proc/uptime)
    echo "\$start \$end" >"\$R/\$name.time"
done <"\$R/binaries"
cut -d' ' -f1 /proc/uptime >"\$R/done"
EOF
chmod +x "$RESULTS/inner.sh"

start_vm=$(date +%s.%N)
set +e
if [[ $MODE == lab ]]; then
    say "booting $KVER under software emulation (2 CPUs, 1 GiB; about 20 s) to run: $LAB_BINARY $*"
    PATH="$VNG_VENV/bin:$PATH" timeout --kill-after=30 "$VM_TIMEOUT" \
        "$VNG_VENV/bin/vng" -r "/boot/vmlinuz-$KVER" --disable-kvm --cpus 2 --memory 1G \
        --rwdir "$RESULTS" --exec "bash $RESULTS/inner.sh" \
        </dev/null 2>&1 | tee "$RESULTS/vng.log"
    vng_rc=${PIPESTATUS[0]}
else
    say "booting $KVER under software emulation (2 CPUs, 1 GiB) and running the kernel tests"
    PATH="$VNG_VENV/bin:$PATH" timeout --kill-after=30 "$VM_TIMEOUT" \
        "$VNG_VENV/bin/vng" --verbose -r "/boot/vmlinuz-$KVER" --disable-kvm --cpus 2 --memory 1G \
        --rwdir "$RESULTS" --exec "bash $RESULTS/inner.sh" \
        </dev/null >"$RESULTS/vng.log" 2>&1
    vng_rc=$?
fi
set -e
vm_seconds=$(since "$start_vm")

# --- 4. report ------------------------------------------------------------------------------
if [[ ! -f $RESULTS/booted_at ]]; then
    tail -n 60 "$RESULTS/vng.log" >&2 || true
    die "THE VM DID NOT BOOT (vng exit $vng_rc after ${vm_seconds%.*} s; log above, full: $RESULTS/vng.log)"
fi
say "VM booted kernel $(cat "$RESULTS/kernel") in $(cat "$RESULTS/booted_at") s (guest uptime at start of the tests)"
say "IPVS schedulers loaded: $(cat "$RESULTS/schedulers")"
if [[ -s $RESULTS/modprobe.err ]]; then
    say "modprobe said: $(tr '\n' ' ' <"$RESULTS/modprobe.err")"
fi
if [[ $MODE == lab ]]; then
    [[ -f $RESULTS/done ]] || die "THE VM DID NOT FINISH (vng exit $vng_rc after ${vm_seconds%.*} s, timeout ${VM_TIMEOUT} s; log: $RESULTS/vng.log)"
    lab_rc=$(cat "$RESULTS/lab.rc" 2>/dev/null || echo 1)
    say "VM wall time ${vm_seconds%.*} s (boot + demo + shutdown); $LAB_BINARY exited $lab_rc (output kept in $RESULTS/lab.out)"
    exit "$lab_rc"
fi

failed=()
passed=()
for bin in "${BINARIES[@]}"; do
    name=$(basename "$bin")
    printf '\n==> vm: ---- %s ----\n' "$name"
    if [[ -f $RESULTS/$name.out ]]; then cat "$RESULTS/$name.out"; fi
    rc=$(cat "$RESULTS/$name.rc" 2>/dev/null || echo "missing")
    if [[ $rc == 0 ]]; then
        passed+=("$name")
    else
        failed+=("$name (exit $rc)")
    fi
    if [[ -f $RESULTS/$name.time ]]; then
        read -r t0 t1 <"$RESULTS/$name.time"
        say "$name: exit $rc in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (guest clock)"
    fi
done
echo
if [[ ! -f $RESULTS/done ]]; then
    tail -n 60 "$RESULTS/vng.log" >&2 || true
    die "THE VM DID NOT FINISH (vng exit $vng_rc after ${vm_seconds%.*} s, timeout ${VM_TIMEOUT} s; log above)"
fi
total=$(since "$start_all")
say "VM wall time ${vm_seconds%.*} s (boot + tests + shutdown); whole run ${total%.*} s"
if ((${#failed[@]})); then
    die "kernel test binaries FAILED: ${failed[*]}"
fi
say "all ${#passed[@]} kernel test binaries passed: ${passed[*]}"

#!/bin/bash
# Builds the haldir Debian package from the workspace with dpkg-deb (no cargo-deb:
# installing cargo-deb in CI costs minutes of compile time; dpkg-deb is already there).
#
#   packaging/build-deb.sh [OUTDIR]    (default OUTDIR: target/debian)
#
# Uses target/release/haldir when HALDIR_BIN is not set (builds it if missing).
# HALDIR_DEB_COMPRESSION: dpkg-deb's -Z (default xz; the VM test uses gzip, faster there).
# Prints the path of the .deb on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
outdir=${1:-target/debian}
bin=${HALDIR_BIN:-target/release/haldir}
if [ ! -x "$bin" ]; then
	CARGO_INCREMENTAL=0 cargo build --release --bin haldir >&2
fi
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$bin" "$root/usr/sbin/haldir"
strip --strip-unneeded "$root/usr/sbin/haldir" 2>/dev/null || true
install -D -m 0644 packaging/haldir.service "$root/usr/lib/systemd/system/haldir.service"
install -D -m 0644 packaging/haldir.default "$root/etc/default/haldir"
install -D -m 0644 config/examples/haldir.toml "$root/etc/haldir/haldir.toml"
install -D -m 0644 packaging/modules-load.conf "$root/usr/lib/modules-load.d/haldir.conf"

doc=$root/usr/share/doc/haldir
install -D -m 0644 README.md "$doc/README.md"
install -d "$doc/docs" "$doc/examples"
install -m 0644 docs/*.md "$doc/docs/"
install -m 0644 config/FORMAT.md config/KEEPALIVED.md "$doc/docs/"
install -m 0644 packaging/keepalived-conf.conf packaging/haldir.nft "$doc/examples/"

# Man pages and completions come from the binary's own clap definition.
gen=$root/gen
"$bin" generate man "$gen/man"
"$bin" generate completions "$gen/completions"
install -d "$root/usr/share/man/man8"
for page in "$gen"/man/*.8; do
	gzip -9n -c "$page" > "$root/usr/share/man/man8/$(basename "$page").gz"
done
install -D -m 0644 "$gen/completions/haldir.bash" "$root/usr/share/bash-completion/completions/haldir"
install -D -m 0644 "$gen/completions/_haldir" "$root/usr/share/zsh/vendor-completions/_haldir"
install -D -m 0644 "$gen/completions/haldir.fish" "$root/usr/share/fish/vendor_completions.d/haldir.fish"
rm -rf "$gen"

install -d "$root/DEBIAN"
printf '%s\n' /etc/default/haldir /etc/haldir/haldir.toml > "$root/DEBIAN/conffiles"
# haldir started as root by hand (not by the unit, whose DynamicUser takes the same name)
# runs as the system user haldir once up: create it.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && ! getent passwd haldir >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin haldir
fi
POSTINST
chmod 0755 "$root/DEBIAN/postinst"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
# The C library the binary needs: the newest GLIBC_2.x version it names, and 2.36 when its
# relocations are packed (GLIBC_ABI_DT_RELR; .cargo/config.toml). A host with an older one
# would refuse to start it.
needs=$(readelf -V "$root/usr/sbin/haldir")
glibc=$({ grep -o 'GLIBC_2\.[0-9]*' <<<"$needs" || true; } | sed 's/GLIBC_//' | sort -uV | tail -n1)
if grep -q GLIBC_ABI_DT_RELR <<<"$needs"; then
	glibc=$(printf '%s\n' "${glibc:-2.36}" 2.36 | sort -V | tail -n1)
fi
libc_depends=libc6${glibc:+ (>= $glibc)}
cat > "$root/DEBIAN/control" <<CONTROL
Package: haldir
Version: $version
Architecture: $arch
Maintainer: haldir developers <haldir@localhost>
Installed-Size: $size
Depends: $libc_depends, iproute2
Recommends: ipvsadm
Section: net
Priority: optional
Description: VRRP and IPVS director for LVS direct-routing clusters
 haldir replaces keepalived on LVS direct-routing routers: VRRP (v2 and v3),
 health checks and the IPVS table, from a TOML file or a keepalived.conf.
CONTROL

mkdir -p "$outdir"
deb="$outdir/haldir_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${HALDIR_DEB_COMPRESSION:-xz}" --build "$root" "$deb" >&2
echo "$deb"

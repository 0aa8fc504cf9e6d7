#!/bin/sh
# usage: deb_test.sh BUILD_DIR CMAKE CPACK
# Makes the .deb from BUILD_DIR (cpack -G DEB), checks it holds the binary, the unit, both
# manual pages (gzip'd), the example policies and the copyright file, that `cmake --install
# --prefix /usr` with DESTDIR stages exactly the same files, that the packaged unit names
# /usr/sbin/flowshaper, and that lintian reports no error. Its warnings are printed.
set -eu
build=$1 cmake=$2 cpack=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/out" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log"; fail "cpack -G DEB failed"; }
deb=$(ls "$tmp"/out/*.deb)
echo "package: $(basename "$deb")"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's#^\./#/#' | sort >"$tmp/deb.list"

DESTDIR="$tmp/stage" "$cmake" --install "$build" --prefix /usr >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "cmake --install failed"; }
(cd "$tmp/stage" && find . ! -type d | sed 's#^\./#/#' | sort) >"$tmp/stage.list"
diff -u "$tmp/deb.list" "$tmp/stage.list" || fail "the .deb and the DESTDIR install hold different files"

for f in /usr/sbin/flowshaper /lib/systemd/system/flowshaper.service /usr/share/man/man8/flowshaper.8.gz \
         /usr/share/man/man5/flowshaper.toml.5.gz /usr/share/doc/flowshaper/copyright \
         /usr/share/doc/flowshaper/changelog.Debian.gz /usr/share/flowshaper/policies/mail-server.toml; do
  grep -qx "$f" "$tmp/deb.list" || fail "$f missing from the .deb"
done
# A unit file path may differ where systemd's pkg-config says so; the binary's may not.
mkdir "$tmp/x" && dpkg-deb -x "$deb" "$tmp/x"
unit=$(find "$tmp/x" -name flowshaper.service)
grep -qx 'ExecStart=/usr/sbin/flowshaper run /etc/flowshaper/flowshaper.toml' "$unit" ||
  fail "the packaged unit does not start /usr/sbin/flowshaper: $(grep ^ExecStart= "$unit")"
gzip -t "$tmp/x/usr/share/man/man8/flowshaper.8.gz" || fail "flowshaper.8.gz is not gzip"
dpkg-deb -f "$deb" Depends | grep -q libnl-route || fail "Depends lacks the computed library dependencies"
[ "$(dpkg-deb -f "$deb" Section)" = net ] || fail "Section is not net"

# lintian: errors fail; warnings are listed (README, Packaging, says which are kept and why).
rc=0
HOME=$tmp lintian --fail-on error "$deb" >"$tmp/lintian.out" 2>&1 || rc=$?
cat "$tmp/lintian.out"
[ $rc -eq 0 ] || fail "lintian reports errors"
echo "ok: $(wc -l <"$tmp/deb.list") files, same as the staged install; lintian: no error"

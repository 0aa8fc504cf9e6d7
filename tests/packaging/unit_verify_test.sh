#!/bin/sh
# usage: unit_verify_test.sh BUILD_DIR CMAKE
# Stages `cmake --install --prefix /usr` and runs `systemd-analyze verify` on the unit it
# rendered, in a root holding the staged files, systemd's own units and the helpers the unit
# runs (the binary must exist for verify). Any message at all fails: verify reports unknown keys
# and bad values on stderr but still exits 0. Then prints `systemd-analyze security`'s score.
set -eu
build=$1 cmake=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
DESTDIR="$root" "$cmake" --install "$build" --prefix /usr >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; echo "FAIL: cmake --install"; exit 1; }
unit=$(cd "$root" && find . -name flowshaper.service | sed 's#^\.##')
[ -n "$unit" ] || { echo "FAIL: no flowshaper.service staged"; exit 1; }
unitdir=$(dirname "$unit")
for dir in /lib/systemd/system /usr/lib/systemd/system; do
  [ -d "$dir" ] && mkdir -p "$root$dir" && cp -an "$dir/." "$root$dir/"
done
for helper in /bin/kill /usr/bin/touch; do
  mkdir -p "$root$(dirname "$helper")" && cp "$helper" "$root$helper"
done
echo "verifying $unit (staged)"
grep '^Exec' "$root$unit"
rc=0
systemd-analyze verify --man=no --root="$root" "$unit" >"$tmp/verify.out" 2>&1 || rc=$?
if [ $rc -ne 0 ] || [ -s "$tmp/verify.out" ]; then
  cat "$tmp/verify.out"
  echo "FAIL: systemd-analyze verify (exit $rc) is not clean"
  exit 1
fi
echo "systemd-analyze verify: clean"
systemd-analyze security --offline=yes --root="$root" "$(basename "$unit")" 2>/dev/null | tail -1 || true

#!/usr/bin/env bash
# The test command: installs what is needed, builds (warnings are errors here: -DFLOWSHAPER_WERROR=ON),
# and runs every test — unit tests, the policy corpus, the real-kernel tests in throwaway network
# namespaces (label "kernel": they need root and fail without it), the packaging tests (.deb,
# lintian, systemd-analyze verify) — then the Release build from a copy of the tree in another
# folder with the unit tests run as an unprivileged user, and the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and last a chosen set of the real-kernel tests
# once more on Debian 12's stock kernel in a VM (tools/stock-kernel.sh: qemu, software
# emulation), where cls_fw, fq_codel, sfq and the modules that libkmod loads are there.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root: the real-kernel tests need network namespaces" >&2; exit 1; }
tools/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLOWSHAPER_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j1)

# The manual pages render without warnings.
for page in man/flowshaper.8 man/flowshaper.toml.5; do
  out=$(groff -ww -man -Tutf8 "$page" 2>&1 >/dev/null)
  [[ -z $out ]] || { echo "$page: groff warnings:"; echo "$out"; exit 1; }
done
echo "manual pages: 2 passed, 0 failed"

# Release (-O3), from a copy of the tree in another folder: nothing may depend on where the tree
# is, and GCC's -O3-only warnings must not fail the build. Its unit tests then run as "nobody":
# a packager's `ctest -LE kernel` needs no root and touches no namespace (an unlabelled test
# that needs either fails here).
rel=$(mktemp -d /tmp/flowshaper-release.XXXXXX)
trap 'rm -rf "$rel"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$rel" 2>/dev/null || true
mkdir -p "$rel/build"
cmake -S "$rel" -B "$rel/build" -DCMAKE_BUILD_TYPE=Release -DFLOWSHAPER_WERROR=ON >/dev/null
cmake --build "$rel/build" -j"$jobs"
chmod 755 "$rel"
chown -R nobody:nogroup "$rel/build"
netns_before=$(ip netns list | sort)
setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$rel/build" \
  ctest --test-dir "$rel/build" --output-on-failure -LE kernel -j"$jobs"
[[ $(ip netns list | sort) == "$netns_before" ]] || echo "note: the namespace list changed during the unprivileged run (another user's tests?)"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFLOWSHAPER_SANITIZE=ON -DFLOWSHAPER_BENCH=OFF \
  -DFLOWSHAPER_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ctest --output-on-failure -LE "kernel|packaging" -j"$jobs")

# The stock kernel: what users run. Under TCG a daemon test takes ten times as long as here, so
# the stage runs the tests whose subject the stock kernel changes (the README lists them): module
# loading, the kernel's features, fw filters and fq_codel leaves, the leaf's delay under load, a
# heavy client capped through fw on both firewall backends, SIGKILL adoption and drift repair.
stock_tests='^kernel_modules\.|^features\(\) answers|^a fw filter is built|^an fq_codel leaf is built|^leaf\.'
stock_tests+='|^an IPv4 connection this host opens that passes flow_bytes|^after SIGKILL a restarted daemon adopts what'
stock_tests+='|^faults\.SIGKILL with a heavy client active|^faults\.the root qdisc deleted'
tools/stock-kernel.sh build -- -R "$stock_tests"

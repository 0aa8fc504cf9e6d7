#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test — unit tests, the policy
# corpus, the real-kernel tests in throwaway network namespaces (they need root and fail without
# it), and the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "run as root: the real-kernel tests need network namespaces" >&2; exit 1; }
tools/install-deps.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j1)

# The manual pages render without warnings.
for page in man/flowshaper.8 man/flowshaper.toml.5; do
  out=$(groff -ww -man -Tutf8 "$page" 2>&1 >/dev/null)
  [[ -z $out ]] || { echo "$page: groff warnings:"; echo "$out"; exit 1; }
done
echo "manual pages: 2 passed, 0 failed"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFLOWSHAPER_SANITIZE=ON -DFLOWSHAPER_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ctest --output-on-failure -LE kernel -j"$jobs")

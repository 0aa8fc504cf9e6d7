#!/bin/bash
# Runs inside the stock-kernel VM, chrooted into the host's root (read-only 9p + RAM overlay), as
# root, started by the initramfs' /init (see tools/stock-kernel.sh). Its exit status is the run's.
set -uo pipefail

# From the host: BUILD_DIR, CMD (a shell command that replaces ctest when set), CTEST_ARGS
# (an array) and PASS_ENV (assignments of the host's FLOWSHAPER_* and CI variables).
# shellcheck source=/dev/null
. /run/stock-kernel/job.bash
# shellcheck disable=SC2163 # each is NAME=VALUE
for kv in "${PASS_ENV[@]}"; do export "$kv"; done
# Lets a test tell that it runs on Debian's stock kernel rather than the host's.
export FLOWSHAPER_STOCK_KERNEL=1

ip link set lo up

# The console is a serial line: a window size keeps programs that ask for one sane.
stty cols 200 rows 50 2>/dev/null || true

cd "$BUILD_DIR" || exit 125
echo "stock-kernel: $(uname -r), up $(cut -d" " -f1 /proc/uptime) s, $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo), in $BUILD_DIR"
if [[ -n $CMD ]]; then
  bash -c "$CMD" 2>&1 | tee /run/stock-kernel/output.log
else
  ctest -L kernel --output-on-failure "${CTEST_ARGS[@]}" 2>&1 | tee /run/stock-kernel/output.log
fi
rc=${PIPESTATUS[0]}
cp Testing/Temporary/LastTest.log /run/stock-kernel/ 2>/dev/null || true
exit "$rc"

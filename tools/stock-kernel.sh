#!/usr/bin/env bash
# Runs a build's real-kernel tests (ctest label "kernel") on Debian 12's own kernel, in a VM.
#
#   tools/stock-kernel.sh [BUILD_DIR] [-- CTEST_ARGS...]
#
# Why: the machine's kernel may lack what Debian's stock kernel has as modules (cls_fw, sfq,
# act_connmark, ...), or have no loadable modules at all; users run the stock kernel. This boots
# the kernel that linux-image-amd64 depends on under qemu and runs, inside it,
#   cd BUILD_DIR && ctest -L kernel --output-on-failure CTEST_ARGS...
# against this machine's own root (shared read-only over 9p, with writes kept in the guest's RAM),
# so the guest runs exactly the binaries and tools installed here. The guest's output is printed
# live; the exit status is ctest's, 124 if the time limit hit, 125 if the guest did not report one
# (did not boot, crashed, init failed). Needs root. Installs what it needs from Debian's archive.
#
# BUILD_DIR defaults to ./build of the source tree this script is in.
#
# Environment:
#   STOCK_KERNEL_CMD      a shell command to run (in BUILD_DIR) instead of ctest, e.g. to look
#                         around: STOCK_KERNEL_CMD='uname -r; lsmod' tools/stock-kernel.sh
#   STOCK_KERNEL_TIMEOUT  seconds for the whole VM run, boot included (default 3600)
#   STOCK_KERNEL_ACCEL    tcg (default) or kvm. KVM is opt-in: where this machine is itself a
#                         VM, /dev/kvm may be there without working nested virtualisation (on
#                         the project's machines the guest's firmware hangs at PCI setup).
#   STOCK_KERNEL_MEM      guest memory (default 4G; the overlay's writes live in it too)
#   STOCK_KERNEL_SMP      guest CPUs (default: this machine's, at most 4)
#   STOCK_KERNEL_PACKAGE  the kernel package (default: what linux-image-amd64 depends on)
#   STOCK_KERNEL_CACHE    where extracted kernels are kept for later runs
#                         (default /var/cache/flowshaper/stock-kernel/<kernel release>)
#   STOCK_KERNEL_OUT      a directory to keep the guest's files in after the run: status,
#                         output.log, LastTest.log (ctest's), dmesg.txt (default: a temp dir,
#                         removed)
#   STOCK_KERNEL_VERBOSE  1: show the kernel's boot messages
# The guest sees FLOWSHAPER_STOCK_KERNEL=1 and the host's FLOWSHAPER_* and CI variables.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
guest_files=$here/stock-kernel

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

build_dir=
ctest_args=()
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --) shift; ctest_args=("$@"); break ;;
    *)
      [[ -z $build_dir ]] || { echo "stock-kernel: one BUILD_DIR only (ctest arguments go after --)" >&2; exit 2; }
      build_dir=$1 ;;
  esac
  shift
done
build_dir=$(realpath -e "${build_dir:-$here/../build}")
[[ -d $build_dir ]] || { echo "stock-kernel: $build_dir is not a directory" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "stock-kernel: run as root (qemu serves the root file system as root)" >&2; exit 2; }

timeout=${STOCK_KERNEL_TIMEOUT:-3600}
accel=${STOCK_KERNEL_ACCEL:-tcg}
mem=${STOCK_KERNEL_MEM:-4G}
smp=${STOCK_KERNEL_SMP:-$(($(nproc) < 4 ? $(nproc) : 4))}
cache_root=${STOCK_KERNEL_CACHE:-/var/cache/flowshaper/stock-kernel}
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH # depmod, modprobe
# Another apt (tools/install-deps.sh in a parallel job, unattended upgrades) may hold the lock.
apt_opts=(-o DPkg::Lock::Timeout=600)

# shellcheck disable=SC2054 # (qemu options have commas)
case $accel in
  kvm) accel_opts=(-accel kvm -cpu host) ;;
  tcg) accel_opts=(-accel tcg,thread=multi -cpu max) ;;
  *) echo "stock-kernel: STOCK_KERNEL_ACCEL is tcg or kvm, not $accel" >&2; exit 2 ;;
esac

# --- Temporary files, and qemu, do not outlive this script.
tmp=$(mktemp -d /tmp/stock-kernel.XXXXXX)
qpid=
spid=
work=
# shellcheck disable=SC2317 # (run by the trap)
cleanup() {
  [[ -z $qpid ]] || kill "$qpid" 2>/dev/null || true
  [[ -z $spid ]] || wait "$spid" 2>/dev/null || true
  rm -rf "$tmp" ${work:+"$work"}
}
trap cleanup EXIT
trap 'echo "stock-kernel: interrupted" >&2; exit 130' INT
trap 'echo "stock-kernel: terminated" >&2; exit 143' TERM

# --- What this needs on the host: qemu; a static busybox for the initramfs; kmod (depmod here,
# modprobe in the guest: the guest's modprobe is the host's, run in the shared root); cpio.
need=(qemu-system-x86 busybox-static kmod cpio)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
apt_updated=0
apt_update() { ((apt_updated)) || { apt-get "${apt_opts[@]}" update -qq; apt_updated=1; }; }
if ((${#missing[@]})); then
  echo "stock-kernel: installing ${missing[*]}"
  apt_update
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- The kernel: the package linux-image-amd64 depends on today (the ABI name changes with
# Debian's kernel updates, so it is looked up, not written here).
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}'
}
pkg=${STOCK_KERNEL_PACKAGE:-$(kernel_package)}
if [[ -z $pkg ]]; then
  apt_update # no package lists yet (a fresh machine)
  pkg=$(kernel_package)
fi
[[ $pkg == linux-image-* ]] || { echo "stock-kernel: cannot tell which kernel linux-image-amd64 depends on" >&2; exit 125; }
release=${pkg#linux-image-}
kdir=$cache_root/$release

# Downloaded and unpacked once, then reused: <cache>/<release>/{boot,lib/modules/<release>}
# with modules.dep made by depmod (the package leaves that to its postinst). Unpacked beside
# the cache entry and renamed into place, under a lock, so a run that is stopped halfway or a
# run in parallel never sees half a kernel.
if [[ ! -e $kdir/.complete ]]; then
  mkdir -p "$cache_root"
  exec 9>"$cache_root/.lock"
  flock 9
  if [[ ! -e $kdir/.complete ]]; then
    echo "stock-kernel: fetching $pkg"
    rm -rf "$cache_root"/.fetch.* # a run killed halfway (we hold the lock: nobody else fetches)
    work=$(mktemp -d "$cache_root/.fetch.XXXXXX")
    # As root into a root-only directory: apt's download sandbox user could not write there.
    download() { (cd "$work" && apt-get "${apt_opts[@]}" -o APT::Sandbox::User=root download -qq "$pkg"); }
    download || { apt_update; download; } # stale package lists name a version gone from the archive
    dpkg -x "$work"/"$pkg"_*.deb "$work/root"
    depmod -b "$work/root" "$release"
    touch "$work/root/.complete"
    rm -rf "$kdir"
    mv "$work/root" "$kdir"
    rm -rf "$work"
    work=
  fi
  exec 9>&-
fi
vmlinuz=$kdir/boot/vmlinuz-$release
[[ -r $vmlinuz ]] || { echo "stock-kernel: no $vmlinuz" >&2; exit 125; }


# --- The initramfs: busybox, /init, the modules needed to reach the host's root (in load order,
# dependencies first: whatever Debian builds in shows as "builtin" and is skipped), and the
# modprobe wrapper the kernel runs for module autoloading (see init).
initramfs=$tmp/initramfs
mkdir -p "$initramfs/bin" "$initramfs/modules"
cp /bin/busybox "$initramfs/bin/busybox"
install -m 755 "$guest_files/init" "$initramfs/init"
mkdir -p "$initramfs/stock-kernel"
printf '#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe "$@"\n' >"$initramfs/stock-kernel/modprobe"
chmod 755 "$initramfs/stock-kernel/modprobe"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -d "$kdir" -S "$release" --show-depends "$m"
done |
  awk '$1 == "insmod" && !seen[$2]++ {print $2}' |
  while read -r ko; do
    cp "$ko" "$initramfs/modules/"
    basename "$ko" >>"$initramfs/modules/order"
  done
(cd "$initramfs" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) >"$tmp/initramfs.cpio"

# --- The results share (written by the guest) and the job for the guest. job: for /init
# (busybox sh), job.bash: for guest.sh.
xfer=${STOCK_KERNEL_OUT:-$tmp/xfer}
mkdir -p "$xfer"
xfer=$(realpath "$xfer")
rm -f "$xfer"/{status,status.tmp,output.log,LastTest.log,dmesg.txt,job,job.bash,guest.sh}
cp "$guest_files/guest.sh" "$xfer/guest.sh"
# The guest gets a fresh /tmp, unless the build or its source tree is in /tmp.
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)
fresh_tmp=1
for d in "$build_dir" "$source_dir"; do [[ $d != /tmp/* ]] || fresh_tmp=0; done
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
  echo "KERNEL_RELEASE=$(shq "$release")"
  echo "KERNEL_DIR=$(shq "$kdir")"
  echo "FRESH_TMP=$fresh_tmp"
} >"$xfer/job"
pass_env=()
while IFS= read -r name; do
  [[ $name == FLOWSHAPER_* || $name == CI ]] && pass_env+=("$name=${!name}")
done < <(compgen -e)
{
  printf 'BUILD_DIR=%q\n' "$build_dir"
  printf 'CMD=%q\n' "${STOCK_KERNEL_CMD:-}"
  # (printf with an empty list would still print one empty word)
  printf 'CTEST_ARGS=('; for a in "${ctest_args[@]}"; do printf '%q ' "$a"; done; printf ')\n'
  printf 'PASS_ENV=('; for a in "${pass_env[@]}"; do printf '%q ' "$a"; done; printf ')\n'
} >"$xfer/job.bash"

# --- qemu.
# console on the first serial port; panic=-1: a dying init or kernel reboots at once, and
# -no-reboot turns that into qemu's exit; mitigations=off: no speculation workarounds (page
# table isolation doubles the cost of every system call under TCG), nothing here is secret.
cmdline="console=ttyS0 panic=-1 mitigations=off tsc=reliable no_timer_check rdinit=/init"
[[ ${STOCK_KERNEL_VERBOSE:-0} == 1 ]] || cmdline+=" quiet"
# shellcheck disable=SC2054
qemu=(
  qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${accel_opts[@]}"
  -smp "$smp" -m "$mem" -no-reboot
  -kernel "$vmlinuz" -initrd "$tmp/initramfs.cpio" -append "$cmdline"
  # The serial console is this script's output (not -nographic: that would put the terminal
  # in raw mode and send ^C to the guest instead of stopping the run).
  -display none -serial stdio
  # The host's root, read-only; multidevs=remap keeps inode numbers unique across the host's
  # mounts. The results share, writable.
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev local,id=xfer,path="$xfer",security_model=none
  -device virtio-9p-pci,fsdev=xfer,mount_tag=xfer
)

echo "stock-kernel: booting $release ($accel, $smp CPUs, $mem) to run the tests in $build_dir"
start=$SECONDS
# The serial line's CR LF made plain LF, line by line, so a log or CI output reads cleanly.
mkfifo "$tmp/console"
sed -u 's/\r$//' <"$tmp/console" &
spid=$!
# timeout runs qemu in a process group of its own: ^C reaches this script, whose trap stops it.
timeout -k 10 "$timeout" "${qemu[@]}" <"/dev/null" >"$tmp/console" 2>&1 &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$spid" || true
spid=

elapsed=$((SECONDS - start))
if [[ -s $xfer/status ]]; then
  rc=$(<"$xfer/status")
  echo "stock-kernel: guest exited with status $rc after ${elapsed} s"
  exit "$rc"
elif ((qrc == 124)); then
  echo "stock-kernel: time limit hit (STOCK_KERNEL_TIMEOUT=$timeout s); the guest was stopped" >&2
  exit 124
else
  echo "stock-kernel: the guest reported no status (qemu exit status $qrc, after ${elapsed} s)" >&2
  exit 125
fi

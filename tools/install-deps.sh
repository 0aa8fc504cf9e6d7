#!/usr/bin/env bash
# Installs what flowshaper needs to build, test and demo, from Debian's archive only.
set -euo pipefail
packages=(
  # build
  cmake g++ make pkg-config clang libclang-rt-14-dev
  # libraries (see CMakeLists.txt for why each is there)
  libnl-3-dev libnl-route-3-dev libnetfilter-conntrack-dev libiptc-dev libxtables-dev libnftables-dev libipset-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libspdlog-dev libfmt-dev catch2
  # the daemon's outside faces: /metrics in the loop, `top` on a terminal, sd_notify
  libmicrohttpd-dev libncurses-dev libsystemd-dev
  # kernel modules a stock kernel needs loaded (ip_tables), without exec
  libkmod-dev
  # real-kernel tests, demo and benchmarks: namespaces, independent checks, traffic
  iproute2 iptables nftables ipset conntrack iperf3 tcpdump tshark procps iputils-ping python3 kmod
  # metrics tests: promtool lints /metrics, the server scrapes the daemon
  prometheus
  # flow record tests: a real IPFIX collector (nfcapd/nfdump) and an IPFIX file reader (ipfixDump)
  nfdump libfixbuf-tools
  # manual pages
  groff-base man-db
  # packaging tests: cpack -G DEB (dpkg-shlibdeps), lintian, systemd-analyze verify
  dpkg-dev file fakeroot lintian systemd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

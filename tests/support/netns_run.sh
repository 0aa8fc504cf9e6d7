#!/bin/sh
# The ctest fixture around the real-kernel tests (label "kernel", fixture "netns").
#   netns_run.sh setup FILE    writes a fresh run id into FILE; the tests' namespaces are then
#                              named "fst-<runid>-<pid>-<tag>-<n>" (tests/support/netns.cpp).
#   netns_run.sh cleanup FILE  deletes the namespaces of that run id whose creating process is
#                              gone (left by a crashed test); never another run's, never one whose
#                              creator still runs.
set -eu
mode=${1:?usage: netns_run.sh setup|cleanup FILE}
file=${2:?usage: netns_run.sh setup|cleanup FILE}

case $mode in
setup)
  id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$id" >"$file.tmp"
  mv "$file.tmp" "$file"
  echo "netns run id: $id (namespaces fst-$id-*)"
  ;;
cleanup)
  if [ ! -r "$file" ]; then
    echo "no run id in $file: nothing of this run to remove"
    exit 0
  fi
  id=$(cat "$file")
  case $id in
  *[!0-9a-f]* | "") echo "$file: not a run id: '$id'" >&2; exit 1 ;;
  esac
  removed=0 kept=0
  for ns in $(ip netns list | awk -v p="^fst-$id-[0-9]+-" '$1 ~ p {print $1}'); do
    pid=${ns#fst-"$id"-}
    pid=${pid%%-*}
    if [ -d "/proc/$pid" ]; then
      echo "kept $ns: its creator (pid $pid) is still running"
      kept=$((kept + 1))
    else
      ip netns del "$ns"
      echo "removed $ns"
      removed=$((removed + 1))
    fi
  done
  echo "run $id: $removed namespace(s) removed, $kept kept"
  ;;
*)
  echo "netns_run.sh: unknown mode '$mode'" >&2
  exit 2
  ;;
esac

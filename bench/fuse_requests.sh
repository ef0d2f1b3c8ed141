#!/usr/bin/env bash
# FUSE requests per file of the small-file workload (bench/workloads.py small-phase), counted by
# the kernel's fuse:fuse_request_send tracepoint for one mount at a time: envelopefs, gocryptfs
# and, when given, libfuse's passthrough_ll (no crypto: the floor for any FUSE file system).
# Round trips are what small files cost through FUSE, and unlike times they do not depend on
# how busy the machine is. Also prints what one round trip without I/O costs on each mount, and
# the space the tree takes in each backing directory.
#
# Usage: bench/fuse_requests.sh            (as root; needs tracefs and gocryptfs)
#        DIRS=20 PASSTHROUGH_LL=/path/to/passthrough_ll BUILD=build-release bench/fuse_requests.sh
# passthrough_ll is not packaged by Debian: build it from a libfuse 3.14 source tree with
#   gcc -O2 example/passthrough_ll.c $(pkg-config --cflags --libs fuse3) -o passthrough_ll
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DIRS=${DIRS:-20}  # 100 files each
BUILD=${BUILD:-build-release}
work=$(realpath -m "${BENCH_DIR:-/var/tmp/envelopefs-fusereq}")
T=/sys/kernel/tracing
[ -d "$T/events/fuse" ] || mount -t tracefs nodev "$T" 2>/dev/null || true
[ -d "$T/events/fuse/fuse_request_send" ] || { echo "no fuse tracepoint in $T" >&2; exit 1; }
if [ ! -x "$BUILD/envelopefs" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DENVELOPEFS_TESTS=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" >/dev/null
fi

cleanup() {
  echo 0 > "$T/events/fuse/fuse_request_send/enable" 2>/dev/null || true
  echo 0 > "$T/events/fuse/fuse_request_send/filter" 2>/dev/null || true
  unmount_work_mounts "$work"
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"/{env-cipher,gc-cipher,pt-source,mnt-env,mnt-gc,mnt-pt,plain}
(umask 077; head -c 32 /dev/urandom > "$work/key")
"$BUILD/envelopectl" init --keyfile "$work/key" "$work/env-cipher" >/dev/null
"$BUILD/envelopefs" --keyfile "$work/key" "$work/env-cipher" "$work/mnt-env"
echo benchpass > "$work/gc-pass"
gocryptfs -q -init -passfile "$work/gc-pass" "$work/gc-cipher" >/dev/null 2>&1
gocryptfs -q -passfile "$work/gc-pass" "$work/gc-cipher" "$work/mnt-gc" 2>/dev/null
declare -A mnt=([envelopefs]=mnt-env [gocryptfs]=mnt-gc) backing=([envelopefs]=env-cipher
  [gocryptfs]=gc-cipher [passthrough_ll]=pt-source)
targets=(envelopefs gocryptfs)
if [ -n "${PASSTHROUGH_LL:-}" ]; then
  "$PASSTHROUGH_LL" -o source="$work/pt-source" "$work/mnt-pt"
  mnt[passthrough_ll]=mnt-pt
  targets+=(passthrough_ll)
fi

count() {  # mount phase -> "OPCODE=n ..." of the requests sent to that mount during the phase
  local m=$1 phase=$2 dev
  # The tracepoint's connection is the kernel dev_t of the mount: MKDEV(major, minor).
  dev=$(stat -c '%Hd %Ld' "$m" | awk '{print $1 * 1048576 + $2}')
  echo "connection == $dev" > "$T/events/fuse/fuse_request_send/filter"
  echo 262144 > "$T/buffer_size_kb"
  echo > "$T/trace"
  echo 1 > "$T/events/fuse/fuse_request_send/enable"
  python3 bench/workloads.py small-phase "$m" "$phase" "$DIRS"
  echo 0 > "$T/events/fuse/fuse_request_send/enable"
  grep -o 'opcode [0-9]* (FUSE_[A-Z_]*)' "$T/trace" | sed 's/.*(FUSE_\(.*\))/\1/' | sort |
    uniq -c | sort -rn | awk '{printf "%s=%s ", $2, $1}'
}

files=$((DIRS * 100))
python3 bench/workloads.py small-phase "$work/plain" create "$DIRS"
sync
plain_kib=$(du -sk "$work/plain/small" | cut -f1)
plain_bytes=$(du -sb "$work/plain/small" | cut -f1)
echo "FUSE requests per file, $files files of 1-16 KiB in $DIRS directories (cold ls and read)"
echo
echo "| phase | $(IFS='|'; echo "${targets[*]}" | sed 's/|/ | /g') |"
echo "|---|$(printf -- '---:|%.0s' "${targets[@]}")"
declare -A detail kib bytes
for phase in create ls read delete; do
  row="| $phase |"
  for t in "${targets[@]}"; do
    if [ "$phase" = ls ] || [ "$phase" = read ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    if [ "$phase" = delete ]; then sleep 3; fi  # the sealer has sealed the tree
    c=$(count "$work/${mnt[$t]}" "$phase")
    detail[$t.$phase]=$c
    n=$(echo "$c" | tr ' ' '\n' | awk -F= '{s += $2} END {print s + 0}')
    row+=" $(python3 -c "print(f'{$n / $files:.2f}')") |"
    if [ "$phase" = create ]; then
      sleep 3
      sync
      kib[$t]=$(du -sk "$work/${backing[$t]}" | cut -f1)
      bytes[$t]=$(du -sb "$work/${backing[$t]}" | cut -f1)
    fi
  done
  echo "$row"
done
echo
for t in "${targets[@]}"; do
  for phase in create ls read delete; do echo "$t $phase: ${detail[$t.$phase]}"; done
done
echo
# What one round trip costs: small files cost a fixed number of them (above), so their times
# follow this. passthrough_ll answers getxattr with ENOSYS once, and the kernel asks no more.
echo "Round trip without I/O, microseconds (mean of 20,000; statfs / getxattr of security.selinux)"
for t in "${targets[@]}"; do
  python3 bench/workloads.py roundtrip "$work/${mnt[$t]}" |
    python3 -c "import json,sys; j=json.load(sys.stdin); print(f'$t: {j[\"statfs_us\"]:.1f} / {j[\"getxattr_us\"]:.1f}')"
done
echo
echo "Space of the tree (du): plain $plain_kib KiB allocated, $plain_bytes bytes apparent"
for t in "${targets[@]}"; do
  python3 -c "print(f'$t: {${kib[$t]}} KiB allocated ({${kib[$t]} / $plain_kib:.3f}x plain), ' \
                    f'{${bytes[$t]}} bytes apparent ({${bytes[$t]} / $plain_bytes:.3f}x plain)')"
done

#!/usr/bin/env bash
# Benchmarks key rotation at scale: creates a volume with many small files (written through a
# real mount, so they are ordinary envelopefs files), rotates the KEK, and times
# `envelopectl rewrap` and `envelopectl audit` (files/s); then times the rewrap of one large file
# against one 1 KiB file (rewrap touches only the header, so both should take the same time).
# Prints a Markdown table.
#
# Usage: bench/rewrap_bench.sh [--files N] [--big-mib M] [--jobs J] [--build DIR]
#   defaults: 100000 files of 1 KiB, a 1024 MiB large file, jobs = nproc, build dir ./build.
# Needs root (or fuse access), fusermount3 and python3. Runs in a temp dir under $TMPDIR (or
# /tmp), removed at the end; every mount it makes is unmounted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

files=100000
big_mib=1024
jobs=$(nproc)
build=build
while [[ $# -gt 0 ]]; do
  case $1 in
    --files) files=$2; shift 2 ;;
    --big-mib) big_mib=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    *) echo "usage: $0 [--files N] [--big-mib M] [--jobs J] [--build DIR]" >&2; exit 2 ;;
  esac
done
ctl=$(realpath "$build/envelopectl")
daemon=$(realpath "$build/envelopefs")
if [[ ! -x $ctl || ! -x $daemon ]]; then
  echo "build envelopectl and envelopefs in $build first" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/envelopefs-rewrap-bench-XXXXXX")
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do
    fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
(umask 077; head -c 32 /dev/urandom > "$work/key")

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }             # start end -> seconds
rate() { printf '%.0f' "$(echo "$1 / $2" | bc -l)"; }  # count seconds -> per second

# new_volume NAME: init and mount; prints nothing, sets $cipher and $mnt.
new_volume() {
  cipher=$work/$1.cipher
  mnt=$work/$1.mnt
  mkdir -p "$mnt"
  "$ctl" init --quiet --keyfile "$work/key" "$cipher"
  mount_volume
}

# mount_volume: mounts $cipher at $mnt.
mount_volume() {
  "$daemon" --keyfile "$work/key" "$cipher" "$mnt"
  mounts+=("$mnt")
}

# unmount_volume: unmounts $mnt and waits until the daemon has sealed everything and exited.
unmount_volume() {
  fusermount3 -u "$mnt"
  for _ in $(seq 1 600); do
    grep -q " $mnt " /proc/mounts || break
    sleep 0.1
  done
  sleep 0.5
}

ctl_q() { "$ctl" "$@" --keyfile "$work/key" --quiet; }

# time_rewrap: rotates $cipher and times a full rewrap; prints seconds.
time_rewrap() {
  ctl_q keys rotate "$cipher" >/dev/null
  local t0 t1
  t0=$(now)
  ctl_q rewrap "$cipher" --jobs "$jobs" >/dev/null
  t1=$(now)
  elapsed "$t0" "$t1"
}

# write_files FIRST COUNT: COUNT files of 1 KiB through the mount, 1000 per directory, from
# several processes (each create waits for the daemon's syncs, so writers overlap).
write_files() {
  python3 - "$mnt" "$1" "$2" "$jobs" <<'EOF'
import os, sys
from multiprocessing import Pool
root, first, count, jobs = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
per_dir = 1000
def write_dir(d):
    data = os.urandom(1024)
    os.makedirs(os.path.join(root, "d%04d" % d), exist_ok=True)
    for i in range(max(first, d * per_dir), min(first + count, (d + 1) * per_dir)):
        with open(os.path.join(root, "d%04d" % d, "f%06d" % i), "wb") as f:
            f.write(data)
with Pool(2 * jobs) as pool:
    pool.map(write_dir, range(first // per_dir, (first + count + per_dir - 1) // per_dir))
EOF
}

echo "creating $files files of 1 KiB through the mount..." >&2
new_volume many
t0=$(now)
write_files 0 "$files"
unmount_volume
t1=$(now)
create_s=$(elapsed "$t0" "$t1")

echo "rewrap and audit of $files files..." >&2
rewrap_s=$(time_rewrap)
t0=$(now)
ctl_q audit "$cipher" --jobs "$jobs" --json >/dev/null
t1=$(now)
audit_s=$(elapsed "$t0" "$t1")
t0=$(now)
"$ctl" audit "$cipher" --jobs "$jobs" --json >/dev/null
t1=$(now)
audit_nokey_s=$(elapsed "$t0" "$t1")
t0=$(now)
ctl_q verify "$cipher" --jobs "$jobs" --json >/dev/null
t1=$(now)
verify_s=$(elapsed "$t0" "$t1")

echo "one ${big_mib} MiB file vs one 1 KiB file..." >&2
new_volume big
head -c "$((big_mib * 1024 * 1024))" /dev/zero > "$mnt/big"
unmount_volume
sync  # rewrap's syncfs must not be timed flushing the file just written
big_s=$(time_rewrap)
new_volume small
head -c 1024 /dev/urandom > "$mnt/small"
unmount_volume
sync
small_s=$(time_rewrap)

# row NAME COUNT SECONDS: one table row with the rate.
row() { printf '| %s | %s | %.2f | %s |\n' "$1" "$2" "$3" "$(rate "$2" "$3")"; }

echo
echo "envelopectl rewrap benchmark ($(nproc) cores, --jobs $jobs, $(uname -r), warm page cache)"
echo
echo "| operation | files | time (s) | files/s |"
echo "|---|---:|---:|---:|"
row "create through the mount (python, 1 KiB each)" "$files" "$create_s"
row "\`envelopectl rewrap\` after \`keys rotate\`" "$files" "$rewrap_s"
row "\`envelopectl audit\` with the key" "$files" "$audit_s"
row "\`envelopectl audit\` without a key" "$files" "$audit_nokey_s"
row "\`envelopectl verify\` (reads all data)" "$files" "$verify_s"
printf '| rewrap of one %s MiB file | 1 | %.3f | |\n' "$big_mib" "$big_s"
printf '| rewrap of one 1 KiB file | 1 | %.3f | |\n' "$small_s"

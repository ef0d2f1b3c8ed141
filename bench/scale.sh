#!/usr/bin/env bash
# Scale benchmark (issue 9): a Hive-partitioned lake written, listed, read back and deleted
# through one mount, and rotated, rewrapped, audited and verified offline in between.
#   events/year=Y/month=M/day=D/hour=H/part-NNNNN.parquet, FILES files in DIRS partitions.
# Reports the time and files/s of every step, and the peak RSS of the daemon and of each tool.
# Targets (issue 9): no error at any step, daemon peak RSS <= 256 MiB, rewrap/audit/verify at
# >= 5,000 files/s in bounded memory.
# Usage: bench/scale.sh                      (as root; 1,000,000 files in 100,000 partitions)
#        FILES=100000 DIRS=10000 bench/scale.sh
#        BUILD=build-release SCALE_DIR=/var/tmp/envelopefs-scale FILE_BYTES=512 NOFILE=4096
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
FILES=${FILES:-1000000}
DIRS=${DIRS:-100000}
FILE_BYTES=${FILE_BYTES:-512}
NOFILE=${NOFILE:-4096}  # the daemon's descriptor limit: a non-root user's common default
BUILD=${BUILD:-build-release}
work=$(realpath -m "${SCALE_DIR:-/var/tmp/envelopefs-scale}")
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DENVELOPEFS_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
cipher="$work/cipher" mnt="$work/mnt" key="$work/key"
cleanup() {
  unmount_if_mounted "$mnt"
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$cipher" "$mnt"
(umask 077; head -c 32 /dev/urandom > "$key")
"$BUILD/envelopectl" init --keyfile "$key" "$cipher" >/dev/null

daemon_pid=""
mount_volume() {
  prlimit --nofile="$NOFILE":"$NOFILE" "$BUILD/envelopefs" --keyfile "$key" "$cipher" "$mnt"
  daemon_pid=$(pgrep -n -f "envelopefs --keyfile $key $cipher")
}
daemon_hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$daemon_pid/status"; }

results=()
# step NAME COMMAND...: runs and times it; a failure stops the benchmark.
step() {
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  local secs rate
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
  rate=$(awk -v n="$FILES" -v s="$secs" 'BEGIN {printf "%d", n / s}')
  results+=("| $name | $secs | $rate |")
  echo "$name: ${secs}s, $rate files/s" >&2
}
# tool NAME ARGS...: an envelopectl step, with its peak RSS.
tool_rss=()
tool() {
  local name=$1; shift
  local log="$work/$name.time"
  step "$name" /usr/bin/time -v -o "$log" "$BUILD/envelopectl" "$@" --keyfile "$key" "$cipher" \
    >"$work/$name.out"
  tool_rss+=("| $name | $(awk -F': ' '/Maximum resident/ {printf "%.1f", $2/1024}' "$log") |")
}

write_lake() {
  python3 - "$mnt" "$FILES" "$DIRS" "$FILE_BYTES" <<'PY'
import os, sys
mnt, files, dirs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
payload = os.urandom(size)
per_dir = max(1, files // dirs)
n = 0
for d in range(dirs):
    y, m, day, h = 2020 + d // (12 * 28 * 24), d // (28 * 24) % 12 + 1, d // 24 % 28 + 1, d % 24
    path = f"{mnt}/events/year={y}/month={m:02}/day={day:02}/hour={h:02}"
    os.makedirs(path, exist_ok=True)
    for i in range(per_dir if d < dirs - 1 else files - n):
        fd = os.open(f"{path}/part-{i:05}.parquet", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
        n += 1
PY
}
list_lake() {
  local n
  n=$(find "$mnt/events" -type f | wc -l)
  [ "$n" -eq "$FILES" ] || { echo "find saw $n files, not $FILES" >&2; return 1; }
}
read_lake() {
  python3 - "$mnt" "$FILES" "$FILE_BYTES" <<'PY'
import os, sys
mnt, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 0
for root, _, names in os.walk(f"{mnt}/events"):
    for name in names:
        with open(os.path.join(root, name), "rb") as f:
            if len(f.read()) != size:
                sys.exit(f"{root}/{name}: wrong size")
        n += 1
if n != files:
    sys.exit(f"read {n} files, not {files}")
PY
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

mount_volume
step write write_lake
drop_caches
step "list (find, cold)" list_lake
drop_caches
step "read back (cold)" read_lake
write_hwm=$(daemon_hwm_kib)
cleanup
tool "keys rotate" keys rotate
tool rewrap rewrap
tool audit audit
tool verify verify
mount_volume
step "delete (rm -rf)" rm -rf "$mnt/events"
delete_hwm=$(daemon_hwm_kib)
cleanup

echo
echo "## bench/scale.sh: $FILES files of $FILE_BYTES bytes in $DIRS partitions, daemon NOFILE $NOFILE"
echo
echo "| step | seconds | files/s |"
echo "|---|---:|---:|"
printf '%s\n' "${results[@]}"
echo
echo "| peak RSS | MiB |"
echo "|---|---:|"
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
echo "| daemon (write, list, read) | $(mib "$write_hwm") |"
echo "| daemon (delete, after a remount) | $(mib "$delete_hwm") |"
printf '%s\n' "${tool_rss[@]}"
rm -rf "$work"

#!/usr/bin/env bash
# Chooses the default chunk size by measurement: sequential write/read and random 4 KiB
# read/write (O_DIRECT) on envelopefs volumes with several chunk sizes, next to gocryptfs, in one
# run, median of ROUNDS. Prints a Markdown table. (bench/run does the full comparison.)
# Usage: bench/chunk_sizes.sh   (as root, after bench/run or scripts/install-deps)
#        SIZES="4K 16K 64K" SIZE_MB=512 RAND_MB=128 RAND_SECONDS=8 ROUNDS=3 bench/chunk_sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZES=${SIZES:-"4K 8K 16K 32K 64K"}
SIZE_MB=${SIZE_MB:-512}
RAND_MB=${RAND_MB:-128}
RAND_SECONDS=${RAND_SECONDS:-8}
ROUNDS=${ROUNDS:-3}
work=$(realpath -m "${BENCH_DIR:-/var/tmp/envelopefs-chunks}")
for p in fio gocryptfs; do
  command -v "$p" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DENVELOPEFS_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null

cleanup() {
  unmount_work_mounts "$work"
}
trap cleanup EXIT
cleanup
rm -rf "$work"
mkdir -p "$work"
(umask 077; head -c 32 /dev/urandom > "$work/key")
targets=(gocryptfs)
mkdir -p "$work/gc-cipher" "$work/mnt-gocryptfs"
echo pass > "$work/gc-pass"
gocryptfs -q -init -passfile "$work/gc-pass" "$work/gc-cipher" >/dev/null
gocryptfs -q -passfile "$work/gc-pass" "$work/gc-cipher" "$work/mnt-gocryptfs"
for s in $SIZES; do
  mkdir -p "$work/c-$s" "$work/mnt-$s"
  rmdir "$work/c-$s"
  build-release/envelopectl init -q --keyfile "$work/key" --chunk-size "$s" "$work/c-$s"
  build-release/envelopefs --keyfile "$work/key" "$work/c-$s" "$work/mnt-$s"
  targets+=("$s")
done

results="$work/results.txt"
: > "$results"
metric() {  # fio json on stdin, read|write, field
  python3 -c "import json,sys; print(json.load(sys.stdin)['jobs'][0]['$1']['$2'])"
}
for round in $(seq 1 "$ROUNDS"); do
  for t in "${targets[@]}"; do
    d="$work/mnt-$t"
    f=(--filename="$d/fio" --ioengine=psync --output-format=json)
    v=$(fio --name=w --rw=write --bs=1M --size="${SIZE_MB}M" --end_fsync=1 "${f[@]}" | metric write bw_bytes)
    echo "$t seq_write_MiBps $(python3 -c "print($v/1048576)")" >> "$results"
    sync; echo 3 > /proc/sys/vm/drop_caches
    v=$(fio --name=r --rw=read --bs=1M --size="${SIZE_MB}M" "${f[@]}" | metric read bw_bytes)
    echo "$t seq_read_MiBps $(python3 -c "print($v/1048576)")" >> "$results"
    rm -f "$d/fio"
    fio --name=l --rw=write --bs=1M --size="${RAND_MB}M" "${f[@]}" >/dev/null
    v=$(fio --name=rr --rw=randread --bs=4k --size="${RAND_MB}M" --direct=1 --time_based \
          --runtime="$RAND_SECONDS" "${f[@]}" | metric read iops)
    echo "$t rand_read_4k_IOPS $v" >> "$results"
    v=$(fio --name=rw --rw=randwrite --bs=4k --size="${RAND_MB}M" --direct=1 --time_based \
          --runtime="$RAND_SECONDS" "${f[@]}" | metric write iops)
    echo "$t rand_write_4k_IOPS $v" >> "$results"
    rm -f "$d/fio"
  done
done
python3 - "$results" $SIZES <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
targets = ["gocryptfs"] + sys.argv[2:]
metrics = ["seq_write_MiBps", "seq_read_MiBps", "rand_read_4k_IOPS", "rand_write_4k_IOPS"]
med = {(t, m): statistics.median(float(v) for tt, mm, v in rows if tt == t and mm == m)
       for t in targets for m in metrics}
print("| metric | gocryptfs | " + " | ".join("envelopefs " + t for t in targets[1:]) + " |")
print("|---|---:|" + "---:|" * (len(targets) - 1))
for m in metrics:
    g = med[("gocryptfs", m)]
    cells = [f"{med[(t, m)]:.0f} ({med[(t, m)] / g:.2f}x)" for t in targets[1:]]
    print(f"| {m} | {g:.0f} | " + " | ".join(cells) + " |")
PY

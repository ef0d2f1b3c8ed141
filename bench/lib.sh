# Helpers shared by the benchmark scripts: source it after `cd` to the repository root.

# Unmounts FUSE mount point $1 if something is mounted there; lazily if it is busy.
unmount_if_mounted() {
  if grep -q " $1 " /proc/mounts; then
    fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null || true
  fi
}

# Unmounts every mount point $1/mnt-* (a benchmark's work directory).
unmount_work_mounts() {
  local m
  for m in "$1"/mnt-*; do unmount_if_mounted "$m"; done
}

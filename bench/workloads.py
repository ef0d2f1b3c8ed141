#!/usr/bin/env python3
"""Small-file and append workloads for bench/run. Prints one JSON object of timings (seconds).

usage: workloads.py smallfiles DIR   create/ls -lR/read/delete 10,000 files of 1-16 KiB in 100 dirs
       workloads.py small-phase DIR create|ls|read|delete [DIRS]   one phase, untimed
       workloads.py appends FILE     10,000 appends of 100 bytes, fsync every 100
       workloads.py footer FILE      cold open + read of the last 64 KiB of a large file (how a
                                     Parquet reader starts), milliseconds, median of 5
       workloads.py roundtrip DIR    microseconds per statfs and per getxattr (ENODATA) through
                                     a mount: the cost of one FUSE round trip without I/O
"""
import json
import os
import random
import shutil
import subprocess
import sys
import time


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def small_tree(root):
    return os.path.join(root, "small")


def small_create(root, dirs=100):
    """dirs x 100 files of 1-16 KiB (a fixed sequence of sizes)."""
    rng = random.Random(7)
    payload = os.urandom(16384)
    base = small_tree(root)
    shutil.rmtree(base, ignore_errors=True)
    for d in range(dirs):
        dpath = os.path.join(base, "d%03d" % d)
        os.makedirs(dpath)
        for i in range(100):
            n = rng.randint(1024, 16384)
            fd = os.open(os.path.join(dpath, "f%03d.csv" % i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, payload[:n])
            os.close(fd)


def small_ls(root):
    subprocess.run(["ls", "-lR", small_tree(root)], stdout=subprocess.DEVNULL, check=True)


def small_read(root):
    total = 0
    for dirpath, _, files in os.walk(small_tree(root)):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                total += len(f.read())
    return total


def small_delete(root):
    shutil.rmtree(small_tree(root))


SMALL_PHASES = {"create": small_create, "ls": small_ls, "read": small_read, "delete": small_delete}


def smallfiles(root):
    out = {}
    for name, cold in (("create", False), ("ls_lR", True), ("read", True), ("delete", False)):
        if cold:
            drop_caches()
        t = time.monotonic()
        SMALL_PHASES[name.split("_")[0]](root)
        out[name] = time.monotonic() - t
    return out


def appends(path):
    line = b"x" * 99 + b"\n"
    if os.path.exists(path):
        os.unlink(path)
    t = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for i in range(10000):
        os.write(fd, line)
        if i % 100 == 99:
            os.fsync(fd)
    os.close(fd)
    elapsed = time.monotonic() - t
    os.unlink(path)
    return {"appends": elapsed}


def footer(path):
    times = []
    for _ in range(5):
        drop_caches()
        t = time.monotonic()
        with open(path, "rb") as f:
            f.seek(-65536, os.SEEK_END)
            f.read(65536)
        times.append((time.monotonic() - t) * 1000)
        time.sleep(3)  # the daemon drops a closed file's state within about two seconds
    times.sort()
    return {"footer_cold_ms": times[len(times) // 2]}


def roundtrip(root, n=20000):
    """Microseconds per FUSE round trip that does no I/O: statfs (every FUSE file system answers
    it), and getxattr of security.selinux on a file (what ls -l asks of every file; ENODATA)."""
    probe = os.path.join(root, "roundtrip-probe")
    with open(probe, "w"):
        pass
    out = {}
    t = time.perf_counter()
    for _ in range(n):
        os.statvfs(root)
    out["statfs_us"] = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        try:
            os.getxattr(probe, "security.selinux", follow_symlinks=False)
        except OSError:
            pass
    out["getxattr_us"] = (time.perf_counter() - t) / n * 1e6
    os.unlink(probe)
    return out


if __name__ == "__main__":
    kind, target = sys.argv[1], sys.argv[2]
    if kind == "small-phase":  # one phase of smallfiles, untimed: workloads.py small-phase DIR PHASE [DIRS]
        phase = sys.argv[3]
        args = [int(sys.argv[4])] if phase == "create" and len(sys.argv) > 4 else []
        SMALL_PHASES[phase](target, *args)
        sys.exit(0)
    workloads = {"smallfiles": smallfiles, "appends": appends, "footer": footer,
                 "roundtrip": roundtrip}
    print(json.dumps(workloads[kind](target)))

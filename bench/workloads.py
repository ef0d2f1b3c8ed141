#!/usr/bin/env python3
"""Small-file and append workloads for bench/run. Prints one JSON object of timings (seconds).

usage: workloads.py smallfiles DIR   create/ls -lR/read/delete 10,000 files of 1-16 KiB in 100 dirs
       workloads.py appends FILE     10,000 appends of 100 bytes, fsync every 100
       workloads.py footer FILE      cold open + read of the last 64 KiB of a large file (how a
                                     Parquet reader starts), milliseconds, median of 5
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


def smallfiles(root):
    rng = random.Random(7)
    payload = os.urandom(16384)
    base = os.path.join(root, "small")
    shutil.rmtree(base, ignore_errors=True)
    out = {}
    t = time.monotonic()
    for d in range(100):
        dpath = os.path.join(base, "d%03d" % d)
        os.makedirs(dpath)
        for i in range(100):
            n = rng.randint(1024, 16384)
            fd = os.open(os.path.join(dpath, "f%03d.csv" % i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, payload[:n])
            os.close(fd)
    out["create"] = time.monotonic() - t
    drop_caches()
    t = time.monotonic()
    subprocess.run(["ls", "-lR", base], stdout=subprocess.DEVNULL, check=True)
    out["ls_lR"] = time.monotonic() - t
    drop_caches()
    t = time.monotonic()
    total = 0
    for dirpath, _, files in os.walk(base):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                total += len(f.read())
    out["read"] = time.monotonic() - t
    t = time.monotonic()
    shutil.rmtree(base)
    out["delete"] = time.monotonic() - t
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


if __name__ == "__main__":
    kind, target = sys.argv[1], sys.argv[2]
    workloads = {"smallfiles": smallfiles, "appends": appends, "footer": footer}
    print(json.dumps(workloads[kind](target)))

#!/usr/bin/env bash
# Touches the machine's free memory once, then frees it: run it before benchmarking on a fresh VM.
#
#   bench/touch_memory.sh        # all free memory but 2 GiB
#   bench/touch_memory.sh 8      # 8 GiB
#
# Some VMs back guest memory lazily: the first write to each page of it costs the host a fault.
# On the machines of docs/BENCHMARKS.md that first touch ran at ~400 MB/s, so every new page the
# kernel handed out (page cache for the ledger's growing files, socket buffers) paid it until the
# guest had used its memory once: new-file writes at 528 MB/s before this script and 4.7 GB/s
# after, and nginx's throughput doubled. Numbers taken before and after it do not compare.
#
# Needs: python3.
set -euo pipefail

command -v python3 >/dev/null || { echo "missing python3" >&2; exit 1; }
free_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
gib=${1:-$(( free_kib / 1024 / 1024 - 2 ))}
if [ "$gib" -le 0 ]; then
  echo "nothing to touch: $(( free_kib / 1024 )) MiB available" >&2
  exit 1
fi

python3 - "$gib" <<'PY'
import mmap, sys, time
gib = int(sys.argv[1])
chunk = b"\1" * (1 << 20)
started = time.time()
m = mmap.mmap(-1, gib << 30)
for off in range(0, gib << 30, 1 << 20):
    m[off:off + (1 << 20)] = chunk
m.close()
took = time.time() - started
print(f"touched {gib} GiB in {took:.1f} s ({gib * 1024 / took:.0f} MiB/s)")
PY

#!/bin/sh
# profile: the throughput load with psktund under valgrind --tool=callgrind; instructions per
# forwarded datagram split into psktun / libuv / GnuTLS / libc, and the kernel's share of CPU time.
# Usage: tests/bench/profile.sh [gateway|terminator|gateway,terminator] [SECONDS]
# Binaries: PSKTUND, PSKTUNCTL, BENCH_BIN as for bench.py (`make bench-profile` sets them).
# (perf stat -e instructions would be the other way; it needs hardware counters,
# which containers and VMs often lack, so callgrind it is.)
set -e
here=$(dirname "$0")
roles=${1:-gateway,terminator}
secs=${2:-10}
exec python3 "$here/bench.py" --profile "$roles" --seconds "$secs"

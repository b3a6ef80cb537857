#!/bin/sh
# check: build psktun out of tree, run every test (make check) and the benchmark's smoke run,
# then the tests again under ASan+UBSan, and once more with io_uring off (PSKTUN_IO_URING=0).
# Usage: tests/check.sh        (from the source tree; needs tests/deps.sh's packages)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# Build from a pristine copy of the tracked files: the tree itself may be
# configured in place (the README's demo command does that), and a configured
# tree refuses out-of-tree builds.
out=$top/build-check
rm -rf "$out"
mkdir -p "$out/src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	( cd "$top" && git ls-files -z | xargs -0 tar cf - ) | ( cd "$out/src" && tar xf - )
else
	( cd "$top" && tar cf - --exclude=./build-check --exclude='./build-*' . ) | ( cd "$out/src" && tar xf - )
	( cd "$out/src" && { [ ! -f Makefile ] || make distclean >/dev/null 2>&1; } )
fi
src=$out/src
# OpenWrt's uci and jshn for packaging/openwrt/test-uci.sh: built once, from the
# sources beside the tree, into an ignored folder both builds share.
for d in "$top/../shared/openwrt-host" "$top/../../shared/openwrt-host"; do
	[ -z "${PSKTUN_OPENWRT_HOST_SRC:-}" ] && [ -f "$d/build.sh" ] && PSKTUN_OPENWRT_HOST_SRC=$(cd "$d" && pwd)
done
PSKTUN_OPENWRT_HOST=${PSKTUN_OPENWRT_HOST:-$top/build-openwrt-host}
export PSKTUN_OPENWRT_HOST_SRC PSKTUN_OPENWRT_HOST
cd "$src" && autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; exit 1; }
total_pass=0 total_fail=0 status=0

run() {	# run NAME CONFIGURE-ARGS...
	name=$1; shift
	dir=$out/$name
	mkdir -p "$dir"
	( cd "$dir" && "$src/configure" -q "$@" && make -j2 -s && env $check_env make -j2 -s check ) > "$dir.out" 2>&1
	rc=$?
	pass=$(grep -h '^# PASS:' "$dir/test-suite.log" "$dir.out" 2>/dev/null | head -1 | awk '{print $3}')
	fail=$(grep -h '^# FAIL:' "$dir.out" 2>/dev/null | head -1 | awk '{print $3}')
	err=$(grep -h '^# ERROR:' "$dir.out" 2>/dev/null | head -1 | awk '{print $3}')
	skip=$(grep -h '^# SKIP:' "$dir.out" 2>/dev/null | head -1 | awk '{print $3}')
	grep -E '^(PASS|FAIL|SKIP|ERROR|XFAIL|XPASS|# )' "$dir.out" | sed "s/^/[$name] /"
	if [ $rc -ne 0 ]; then
		status=1
		echo "[$name] FAILED (exit $rc); the logs:"
		tail -n 60 "$dir.out"
		# automake's .trs files say ":test-result: FAIL" (or ERROR, XPASS);
		# a test that failed prints its own log (harness.py), so show it whole.
		for l in "$dir"/tests/*/*.log "$dir"/tests/*.log; do
			[ -f "$l" ] || continue
			grep -Eq '^:test-result: (FAIL|ERROR|XPASS)' "${l%.log}.trs" 2>/dev/null || continue
			echo "--- $l ($(grep -E '^:test-result: (FAIL|ERROR|XPASS)' "${l%.log}.trs" | head -1 | cut -d' ' -f2))"
			# what failed first (a long daemon log can push it out of the tail)
			grep -E -A6 '^(FAIL|ERROR): |^Traceback|Fail: ' "$l" | head -n 60
			echo "--- the log's last 400 lines"
			tail -n 400 "$l"
		done
	fi
	total_pass=$((total_pass + ${pass:-0}))
	total_fail=$((total_fail + ${fail:-0} + ${err:-0}))
	[ $rc -eq 0 ] || [ "${fail:-0}${err:-0}" != "00" ] || total_fail=$((total_fail + 1))
	: "${skip:=0}"
}

check_env=
run plain
# The benchmark's smoke run: every phase must run and print its line (no timing is asserted).
if ( cd "$out/plain" && make -s bench-smoke ) > "$out/plain.bench" 2>&1; then
	echo "PASS: bench-smoke"; total_pass=$((total_pass + 1))
	sed 's/^/[bench-smoke] /' "$out/plain.bench" | tail -n 25
else
	echo "FAIL: bench-smoke"; total_fail=$((total_fail + 1)); status=1
	tail -n 40 "$out/plain.bench"
fi
run sanitizers --enable-sanitizers
# The suite again with the session sockets' sends through system calls, the
# path of a kernel that refuses io_uring (the runs above use io_uring where the
# build has liburing and the kernel allows it; test_io_path says which).
check_env=PSKTUN_IO_URING=0
run syscalls
echo
echo "$total_pass passed, $total_fail failed"
exit $status

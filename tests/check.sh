#!/bin/sh
# check: build psktun out of tree, run every test (make check) and the benchmark's smoke run,
# then the tests again under ASan+UBSan.
# Usage: tests/check.sh        (from the source tree; needs tests/deps.sh's packages)
set -u
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
[ -x configure ] || autoreconf -fi || exit 1
total_pass=0 total_fail=0 status=0

run() {	# run NAME CONFIGURE-ARGS...
	name=$1; shift
	dir=$src/build-$name
	mkdir -p "$dir"
	( cd "$dir" && "$src/configure" -q "$@" && make -j2 -s && make -j2 -s check ) > "$dir.out" 2>&1
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
		for l in "$dir"/tests/*/*.log "$dir"/tests/*.log; do
			[ -f "$l" ] || continue
			grep -q '^FAIL\|^ERROR' "${l%.log}.trs" 2>/dev/null && { echo "--- $l"; tail -n 80 "$l"; }
		done
	fi
	total_pass=$((total_pass + ${pass:-0}))
	total_fail=$((total_fail + ${fail:-0} + ${err:-0}))
	[ $rc -eq 0 ] || [ "${fail:-0}${err:-0}" != "00" ] || total_fail=$((total_fail + 1))
	: "${skip:=0}"
}

run plain
# The benchmark's smoke run: every phase must run and print its line (no timing is asserted).
if ( cd "$src/build-plain" && make -s bench-smoke ) > "$src/build-plain.bench" 2>&1; then
	echo "PASS: bench-smoke"; total_pass=$((total_pass + 1))
	sed 's/^/[bench-smoke] /' "$src/build-plain.bench" | tail -n 25
else
	echo "FAIL: bench-smoke"; total_fail=$((total_fail + 1)); status=1
	tail -n 40 "$src/build-plain.bench"
fi
run sanitizers --enable-sanitizers
echo
echo "$total_pass passed, $total_fail failed"
exit $status

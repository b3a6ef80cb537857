#!/bin/sh
# Builds the libFuzzer targets for the configuration, key file and address parsers, and runs them if asked.
#
#   tests/fuzz/build.sh [OUTDIR]                    build into OUTDIR (default ./fuzz-build)
#   FUZZ_SECONDS=60 tests/fuzz/build.sh OUTDIR run  build, then run each target for that long
#
# Needs clang with libFuzzer (Debian: clang). A crash leaves crash-* in OUTDIR; replay it
# with OUTDIR/fuzz_NAME crash-..., or build with -DFUZZ_STANDALONE under any compiler.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-fuzz-build}
mkdir -p "$out"
out=$(cd "$out" && pwd)

CC=${CC:-clang}
flags="-std=gnu11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
deps_cflags=$(pkg-config --cflags gnutls libconfig)
deps_libs=$(pkg-config --libs gnutls libconfig)

for t in config keys addr; do
	# shellcheck disable=SC2086
	$CC $flags $deps_cflags "$top/tests/fuzz/fuzz_$t.c" -o "$out/fuzz_$t" $deps_libs
done
echo "built: $out/fuzz_config $out/fuzz_keys $out/fuzz_addr"

if [ "${2:-}" = run ]; then
	seconds=${FUZZ_SECONDS:-60}
	LSAN_OPTIONS="suppressions=$top/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
	export LSAN_OPTIONS
	for t in config keys addr; do
		mkdir -p "$out/corpus-$t"
		echo "fuzz_$t: ${seconds}s"
		dict=
		[ -f "$top/tests/fuzz/$t.dict" ] && dict="-dict=$top/tests/fuzz/$t.dict"
		# shellcheck disable=SC2086
		(cd "$out" && "./fuzz_$t" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
			$dict "corpus-$t" "$top/tests/fuzz/corpus/$t")
	done
fi

#!/bin/sh
# test-sample: the shipped sample configuration passes `psktund -n`; the key example holds no key.
#
# psktund is PSKTUND, else ./agent/psktund of the build directory this runs in;
# plugins are PSKTUN_PLUGIN_DIR, else the build's plugins/*/.libs.
# Exit 0, 1 on a failure, 77 if psktund is not built.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psktun-sample.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
status=0

# Every line of the example is a comment or blank: no package ever ships a key.
if grep -v -e '^#' -e '^[[:space:]]*$' "$here/keys.psk.example"; then
	echo "FAIL: keys.psk.example has a line that is not a comment"
	status=1
else
	echo "PASS: keys.psk.example holds comments only"
fi

psktund=${PSKTUND:-}
[ -z "$psktund" ] && [ -x agent/psktund ] && psktund=$(pwd)/agent/psktund
if [ -z "$psktund" ] || [ ! -x "$psktund" ]; then
	echo "SKIP: psktund -n on psktun.conf (no psktund: set PSKTUND)"
	[ "$status" -eq 0 ] && exit 77
	exit "$status"
fi
plugindir=${PSKTUN_PLUGIN_DIR:-$tmp/plugins}
if [ -z "${PSKTUN_PLUGIN_DIR:-}" ]; then
	mkdir -p "$plugindir"
	for so in "$(dirname "$psktund")"/../plugins/*/.libs/*.so; do
		[ -f "$so" ] && ln -s "$so" "$plugindir/"
	done
fi

# As installed: psktun.conf next to an empty key file made by the package, mode 0640.
cp "$here/psktun.conf" "$tmp/psktun.conf"
printf 'plugin_dir = "%s";\n' "$plugindir" >>"$tmp/psktun.conf"
: >"$tmp/keys.psk"
chmod 0640 "$tmp/keys.psk"
if "$psktund" -n -c "$tmp/psktun.conf" >"$tmp/out" 2>&1 && grep -qx 'configuration OK' "$tmp/out"; then
	echo "PASS: psktund -n accepts psktun.conf with an empty key file"
else
	cat "$tmp/out"
	echo "FAIL: psktund -n refuses psktun.conf with an empty key file"
	status=1
fi

# With its commented-out meters enabled and their keys added.
sed -e 's/^#meters = (/meters = (/' -e 's/^#  { identity/  { identity/' -e 's/^#);/);/' \
	"$tmp/psktun.conf" >"$tmp/meters.conf"
printf 'meter-0001:%032x\nmeter-0002:%032x\n' 1 2 >"$tmp/keys.psk"
if ! grep -q '^meters = (' "$tmp/meters.conf"; then
	echo "FAIL: psktun.conf has no commented-out meters list"
	status=1
elif "$psktund" -n -c "$tmp/meters.conf" >"$tmp/out" 2>&1 && grep -qx 'configuration OK' "$tmp/out"; then
	echo "PASS: psktund -n accepts psktun.conf with its meters and their keys"
else
	cat "$tmp/out"
	echo "FAIL: psktund -n refuses psktun.conf with its meters"
	status=1
fi
exit "$status"

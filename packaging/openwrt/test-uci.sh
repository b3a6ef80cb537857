#!/bin/sh
# test-uci: the OpenWrt UCI -> psktun.conf conversion, run on a PC with stand-ins for OpenWrt's helpers.
#
# Each test/NAME.uci is converted by psktun/files/psktun-uci.sh and must give
# test/NAME.expected exactly (mode 0600); bad.uci must fail with
# test/bad.expected-errors and leave the previous file alone; native.uci must
# name its native file; the shipped psktun/files/psktun.config must convert
# too. When psktund is at hand (PSKTUND, else ./agent/psktund of the build
# directory this runs in), `psktund -n` must accept every generated file;
# plugins are taken from PSKTUN_PLUGIN_DIR, else the build's plugins/*/.libs.
# Exit 0, 1 on a failure, 77 if nothing could be checked.
set -u

here=$(cd "$(dirname "$0")" && pwd)
tests=$here/test
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psktun-uci.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
not_ok() { fail=$((fail + 1)); echo "FAIL: $*"; }
skipped() { skip=$((skip + 1)); echo "SKIP: $*"; }

psktund=${PSKTUND:-}
if [ -z "$psktund" ] && [ -x agent/psktund ]; then
	psktund=$(pwd)/agent/psktund
fi
[ -n "$psktund" ] && [ ! -x "$psktund" ] && psktund=

plugindir=${PSKTUN_PLUGIN_DIR:-}
if [ -z "$plugindir" ]; then
	plugindir=$tmp/plugins
	mkdir -p "$plugindir"
	if [ -n "$psktund" ]; then
		for so in "$(dirname "$psktund")"/../plugins/*/.libs/*.so; do
			[ -f "$so" ] && ln -s "$so" "$plugindir/"
		done
	fi
fi

# prepare NAME UCI-FILE: $tmp/NAME/config/psktun with @DIR@ and @PLUGINDIR@ filled in
prepare() {
	mkdir -p "$tmp/$1/config"
	sed -e "s|@DIR@|$tmp/$1|g" -e "s|@PLUGINDIR@|$plugindir|g" "$2" >"$tmp/$1/config/psktun"
}

# convert NAME: run the conversion as /etc/init.d/psktun does; stdout to NAME/path, stderr to NAME/err
convert() {
	(
		UCI_CONFIG_DIR=$tmp/$1/config
		. "$tests/functions.sh"
		. "$here/psktun/files/psktun-uci.sh"
		config_load psktun || exit 2
		psktun_uci_config "$tmp/$1/var/etc/psktun.conf"
	) >"$tmp/$1/path" 2>"$tmp/$1/err"
}

# expect_file NAME EXPECTED: the generated file is EXPECTED (placeholders filled in), mode 0600
expect_file() {
	out=$tmp/$1/var/etc/psktun.conf
	sed -e "s|@DIR@|$tmp/$1|g" -e "s|@PLUGINDIR@|$plugindir|g" "$2" >"$tmp/$1/expected"
	if [ "$(cat "$tmp/$1/path")" != "$out" ]; then
		not_ok "$1: prints the generated file's path (got '$(cat "$tmp/$1/path")')"
	elif ! diff -u "$tmp/$1/expected" "$out"; then
		not_ok "$1: generated file differs from $(basename "$2")"
	elif [ "$(stat -c %a "$out")" != 600 ]; then
		not_ok "$1: generated file has mode $(stat -c %a "$out"), not 600"
	else
		ok "$1: converts to $(basename "$2")"
	fi
}

# check_daemon NAME KEYS-LIST: psktund -n accepts the generated file, with a key file for the identities
check_daemon() {
	out=$tmp/$1/var/etc/psktun.conf
	if [ -z "$psktund" ]; then
		skipped "$1: psktund -n (no psktund: set PSKTUND)"
		return
	fi
	if grep -q '^    plugin = ' "$out" && [ -z "$(ls "$plugindir" 2>/dev/null)" ]; then
		skipped "$1: psktund -n (no plugins: set PSKTUN_PLUGIN_DIR)"
		return
	fi
	(
		umask 077
		n=0
		while read -r id; do
			n=$((n + 1))
			printf '%s:%032x\n' "$id" "$n"
		done <"$2" >"$tmp/$1/keys.psk"
	)
	if "$psktund" -n -c "$out" >"$tmp/$1/check" 2>&1 && grep -qx 'configuration OK' "$tmp/$1/check"; then
		ok "$1: psktund -n accepts it"
	else
		cat "$tmp/$1/check"
		not_ok "$1: psktund -n refuses it"
	fi
}

for name in gateway terminator; do
	prepare "$name" "$tests/$name.uci"
	if convert "$name"; then
		expect_file "$name" "$tests/$name.expected"
		check_daemon "$name" "$tests/$name.keys"
	else
		cat "$tmp/$name/err"
		not_ok "$name: conversion failed"
	fi
done

prepare escape "$tests/escape.uci"
if convert escape; then
	expect_file escape "$tests/escape.expected"
else
	cat "$tmp/escape/err"
	not_ok "escape: conversion failed"
fi

prepare native "$tests/native.uci"
if convert native && [ "$(cat "$tmp/native/path")" = /etc/psktun/psktun.conf ] &&
	[ ! -e "$tmp/native/var" ]; then
	ok "native: native_config is used as it is, nothing generated"
else
	not_ok "native: expected /etc/psktun/psktun.conf and no generated file, got '$(cat "$tmp/native/path")'"
fi

prepare bad "$tests/bad.uci"
mkdir -p "$tmp/bad/var/etc"
echo "# the last good configuration" >"$tmp/bad/var/etc/psktun.conf"
if convert bad; then
	not_ok "bad: conversion succeeded"
elif ! diff -u "$tests/bad.expected-errors" "$tmp/bad/err"; then
	not_ok "bad: error messages differ"
elif [ "$(cat "$tmp/bad/var/etc/psktun.conf")" != "# the last good configuration" ] ||
	[ -e "$tmp/bad/var/etc/psktun.conf.new" ] || [ -s "$tmp/bad/path" ]; then
	not_ok "bad: the last good file was touched, or a partial file is left"
else
	ok "bad: refused with every error, last good file kept"
fi

# The shipped UCI file, with the key file and plugins pointed into the test directory.
mkdir -p "$tmp/shipped"
sed -e "s|'/etc/psktun/keys.psk'|'@DIR@/keys.psk'|" \
	-e "s|^config psktun 'main'\$|&\n\toption plugin_dir '@PLUGINDIR@'|" \
	"$here/psktun/files/psktun.config" >"$tmp/shipped.uci"
prepare shipped "$tmp/shipped.uci"
if convert shipped && [ "$(cat "$tmp/shipped/path")" = "$tmp/shipped/var/etc/psktun.conf" ]; then
	ok "shipped: psktun.config converts"
	: >"$tmp/shipped/ids"
	check_daemon shipped "$tmp/shipped/ids"
else
	cat "$tmp/shipped/err"
	not_ok "shipped: psktun.config does not convert"
fi

# The init script's start_service with procd's calls recorded: it writes the
# file, makes the missing key file (0600), checks with psktund -n, and hands
# procd the instance with respawn and reload_signal.
if [ -z "$psktund" ] || [ -z "$(ls "$plugindir" 2>/dev/null)" ]; then
	skipped "init: start_service (needs psktund and plugins)"
else
	sed -e "s|'/var/run/psktun/control'|'@DIR@/run/control'|" "$tmp/shipped.uci" >"$tmp/init.uci"
	prepare init "$tmp/init.uci"
	(
		UCI_CONFIG_DIR=$tmp/init/config
		PSKTUN_UCI_SH=$here/psktun/files/psktun-uci.sh
		. "$tests/functions.sh"
		. "$here/psktun/files/psktun.init"
		PROG=$psktund
		GENERATED=$tmp/init/var/etc/psktun.conf
		procd_open_instance() { echo "procd_open_instance $*"; }
		procd_set_param() { echo "procd_set_param $*"; }
		procd_close_instance() { echo "procd_close_instance $*"; }
		procd_add_reload_trigger() { echo "procd_add_reload_trigger $*"; }
		logger() { cat >&2; }
		start_service && service_triggers
	) >"$tmp/init/procd" 2>"$tmp/init/err"
	conf=$tmp/init/var/etc/psktun.conf
	cat >"$tmp/init/expected" <<EOF
procd_open_instance 
procd_set_param command $psktund -f -c $conf
procd_set_param stderr 1
procd_set_param limits core=0 0
procd_set_param respawn 3600 5 5
procd_set_param file $conf $tmp/init/keys.psk
procd_set_param reload_signal HUP
procd_close_instance 
procd_add_reload_trigger psktun
EOF
	if ! diff -u "$tmp/init/expected" "$tmp/init/procd"; then
		cat "$tmp/init/err"
		not_ok "init: start_service hands procd a different instance"
	elif [ "$(stat -c %a "$tmp/init/keys.psk" 2>/dev/null)" != 600 ] || [ -s "$tmp/init/keys.psk" ]; then
		not_ok "init: the missing key file was not made empty with mode 0600"
	elif [ ! -d "$tmp/init/run" ]; then
		not_ok "init: the control socket's directory was not made"
	else
		ok "init: start_service writes, checks and starts psktund under procd"
	fi
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || exit 1
[ "$pass" -gt 0 ] || exit 77
exit 0

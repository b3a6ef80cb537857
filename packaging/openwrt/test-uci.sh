#!/bin/sh
# test-uci: the OpenWrt UCI -> psktun.conf conversion and the procd init script, run on a PC
# with OpenWrt's own uci and jshn.
#
# OpenWrt's uci(1) and libubox's jshn (with jshn.sh) are built for this PC by
# ../shared/openwrt-host/build.sh into build-openwrt-host/ of the directory
# this runs in (or taken from PSKTUN_OPENWRT_HOST, a prefix already built;
# PSKTUN_OPENWRT_HOST_SRC names the folder with build.sh). Stand-ins remain
# only for what cannot run here: /lib/functions.sh's config_* helpers
# (test/functions.sh, which reads through the real `uci export` as OpenWrt's
# does), procd and ubus (test/procd.sh: the procd_* calls, building the JSON
# with the real jshn.sh and printing it instead of `ubus call service set`),
# logger, and busybox ash (the init script runs under bash, which has the
# `let` jshn.sh uses; dash does not).
#
# Each test/NAME.uci is converted by psktun/files/psktun-uci.sh and must give
# test/NAME.expected exactly (mode 0600); bad.uci and syntax.uci must fail
# with their .expected-errors and leave the previous file alone; native.uci
# must name its native file; the shipped psktun/files/psktun.config must
# convert too. When psktund is at hand (PSKTUND, else ./agent/psktund of the
# build directory this runs in), `psktund -n` must accept every generated
# file; plugins are taken from PSKTUN_PLUGIN_DIR, else the build's
# plugins/*/.libs. The init script must start no instance while the key file
# is empty, and hand procd test/init.expected-json once keys exist.
# Exit 0, 1 on a failure, 77 if OpenWrt's tools cannot be built here.
set -u

here=$(cd "$(dirname "$0")" && pwd)
tests=$here/test
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psktun-uci.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

# OpenWrt's uci and jshn: built once, or skip (77) only when they cannot be built here.
owrt=${PSKTUN_OPENWRT_HOST:-$(pwd)/build-openwrt-host}
if [ ! -x "$owrt/bin/uci" ] || [ ! -x "$owrt/bin/jshn" ]; then
	src=${PSKTUN_OPENWRT_HOST_SRC:-}
	for d in "$here/../../../shared/openwrt-host" "$here/../../../../shared/openwrt-host"; do
		[ -z "$src" ] && [ -f "$d/build.sh" ] && src=$(cd "$d" && pwd)
	done
	if [ -z "$src" ] || [ ! -f "$src/build.sh" ]; then
		echo "SKIP: OpenWrt's uci and jshn: no sources (set PSKTUN_OPENWRT_HOST_SRC to the folder with build.sh)"
		exit 77
	fi
	if ! command -v cmake >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1 ||
		[ ! -f /usr/include/json-c/json.h ]; then
		echo "SKIP: OpenWrt's uci and jshn: need cmake, cc and libjson-c-dev (sh tests/deps.sh)"
		exit 77
	fi
	if ! sh "$src/build.sh" "$owrt"; then
		echo "FAIL: building OpenWrt's uci and jshn from $src into $owrt"
		exit 1
	fi
fi
PATH=$owrt/bin:$PATH
JSHN_SH=$owrt/share/libubox/jshn.sh
export PATH JSHN_SH

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
		config_load psktun
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

# refused NAME: NAME.uci fails with NAME.expected-errors; the last good file stays, no partial one
refused() {
	prepare "$1" "$tests/$1.uci"
	mkdir -p "$tmp/$1/var/etc"
	echo "# the last good configuration" >"$tmp/$1/var/etc/psktun.conf"
	if convert "$1"; then
		not_ok "$1: conversion succeeded"
	elif ! diff -u "$tests/$1.expected-errors" "$tmp/$1/err"; then
		not_ok "$1: error messages differ"
	elif [ "$(cat "$tmp/$1/var/etc/psktun.conf")" != "# the last good configuration" ] ||
		[ -e "$tmp/$1/var/etc/psktun.conf.new" ] || [ -s "$tmp/$1/path" ]; then
		not_ok "$1: the last good file was touched, or a partial file is left"
	else
		ok "$1: refused with every error, last good file kept"
	fi
}
refused bad
refused syntax

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

# The init script as procd runs it: rc.common's start is procd_open_service,
# start_service, procd_close_service (which calls service_triggers), here with
# test/procd.sh over the real jshn.sh; bash stands in for busybox ash.
# init_start NAME: the JSON procd would get to NAME/procd, stderr to NAME/err
init_start() {
	cat >"$tmp/$1/driver.sh" <<DRIVER
UCI_CONFIG_DIR='$tmp/$1/config'
PSKTUN_UCI_SH='$here/psktun/files/psktun-uci.sh'
. '$tests/functions.sh'
. '$tests/procd.sh'
. '$here/psktun/files/psktun.init'
PROG='$psktund'
GENERATED='$tmp/$1/var/etc/psktun.conf'
logger() { echo "logger \$*: \$(cat)" >&2; }
procd_open_service psktun /etc/init.d/psktun
start_service
procd_close_service
DRIVER
	bash "$tmp/$1/driver.sh" >"$tmp/$1/procd" 2>"$tmp/$1/err"
}

# JSON string escape of a path, as jshn writes it ("/" as "\/")
json_path() {
	printf '%s' "$1" | sed 's|/|\\/|g'
}

if [ -z "$psktund" ] || [ -z "$(ls "$plugindir" 2>/dev/null)" ]; then
	skipped "init: start_service (needs psktund and plugins)"
elif ! command -v bash >/dev/null 2>&1; then
	skipped "init: start_service (needs bash for jshn.sh)"
else
	sed -e "s|'/var/run/psktun/control'|'@DIR@/run/control'|" "$tmp/shipped.uci" >"$tmp/init.uci"
	prepare init "$tmp/init.uci"
	keys=$tmp/init/keys.psk
	# 1. No key file yet: made empty (0600), no instance, one line saying why.
	init_start init
	want_err="logger -s -t psktun -p daemon.notice: not started: the key file $keys is empty; add keys (psktunctl genkey -o $keys IDENTITY), then run /etc/init.d/psktun start"
	want='{ "name": "psktun", "script": "\/etc\/init.d\/psktun", "instances": { }, "triggers": [ [ "config.change", [ "if", [ "eq", "package", "psktun" ], [ "run_script", "\/etc\/init.d\/psktun", "reload" ] ], 1000 ] ] }'
	if [ "$(cat "$tmp/init/procd")" != "$want" ]; then
		not_ok "init: with an empty key file procd gets $(cat "$tmp/init/procd"), want $want"
	elif [ "$(cat "$tmp/init/err")" != "$want_err" ]; then
		not_ok "init: with an empty key file the log says '$(cat "$tmp/init/err")', want '$want_err'"
	elif [ "$(stat -c %a "$keys" 2>/dev/null)" != 600 ] || [ -s "$keys" ]; then
		not_ok "init: the missing key file was not made empty with mode 0600"
	else
		ok "init: no instance while the key file is empty, one log line, key file made 0600"
	fi
	# 2. Keys provisioned: the instance, with what procd needs to respawn and reload it.
	printf 'meter-0001:%032x\n' 1 >"$keys"
	init_start init
	sed -e "s|@PSKTUND@|$(json_path "$psktund" | sed 's|\\|\\\\|g')|g" \
		-e "s|@DIR@|$(json_path "$tmp/init" | sed 's|\\|\\\\|g')|g" \
		"$tests/init.expected-json" >"$tmp/init/expected"
	if ! diff -u "$tmp/init/expected" "$tmp/init/procd"; then
		cat "$tmp/init/err"
		not_ok "init: start_service hands procd a different service"
	elif [ -s "$tmp/init/err" ]; then
		cat "$tmp/init/err"
		not_ok "init: start_service logged something with keys in place"
	elif ! jshn -r "$(cat "$tmp/init/procd")" >/dev/null; then
		not_ok "init: jshn cannot read back what procd would get"
	elif [ ! -d "$tmp/init/run" ]; then
		not_ok "init: the control socket's directory was not made"
	else
		ok "init: start_service writes, checks and hands procd psktund's instance"
	fi
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || exit 1
exit 0

#!/bin/sh
# test-unit: psktund.service passes systemd-analyze verify, and its conditions keep
# the service from starting (skipped, not failed) while the key file is missing or
# empty, and let it start once the file holds keys: evaluated by systemd itself.
# Exit 0, 1 on a failure, 77 without systemd-analyze.
set -u
here=$(cd "$(dirname "$0")" && pwd)
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: no systemd-analyze"; exit 77; }
psktund=${PSKTUND:-$(pwd)/agent/psktund}
[ -x "$psktund" ] || { echo "SKIP: no psktund (set PSKTUND)"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/psktun-unit.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
not_ok() { fail=$((fail + 1)); echo "FAIL: $*"; }

# The unit as `make` writes it, with sbindir at the built psktund and sysconfdir here.
mkdir -p "$tmp/sbin" "$tmp/etc/psktun" "$tmp/unit"
ln -s "$psktund" "$tmp/sbin/psktund"
sed -e "s|@sbindir@|$tmp/sbin|g" -e "s|@sysconfdir@|$tmp/etc|g" \
	"$here/psktund.service.in" >"$tmp/unit/psktund.service"
if systemd-analyze verify --man=no "$tmp/unit/psktund.service" >"$tmp/verify" 2>&1 &&
	! grep -v -e 'Failed to resolve user' -e 'network-online.target' "$tmp/verify" | grep -q .; then
	ok "systemd-analyze verify psktund.service"
else
	cat "$tmp/verify"
	not_ok "systemd-analyze verify psktund.service"
fi

# Every Condition of the unit, as systemd evaluates it before ExecStartPre.
conditions=$(sed -n 's/^\(Condition[A-Za-z]*=.*\)$/\1/p' "$tmp/unit/psktund.service")
starts() {	# 0 if systemd would run the service now (always, without a condition)
	[ -n "$conditions" ] || return 0
	(
		IFS='
'
		# shellcheck disable=SC2086
		systemd-analyze condition $conditions >"$tmp/cond" 2>&1
	)
}
keys=$tmp/etc/psktun/keys.psk
for state in missing empty keys; do
	case $state in
	missing) rm -f "$keys" ;;
	empty) (umask 077 && : >"$keys") ;;
	keys) printf 'meter-0001:%032x\n' 1 >"$keys" ;;
	esac
	if starts; then got=starts; else got=skipped; fi
	want=skipped
	[ "$state" = keys ] && want=starts
	if [ "$got" = "$want" ]; then
		ok "key file $state: the service $want"
	else
		cat "$tmp/cond" 2>/dev/null
		not_ok "key file $state: the service $got, want $want"
	fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

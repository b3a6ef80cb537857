#!/bin/sh
# deps: install what building and testing psktun needs on Debian 12 (as root, or through sudo).
#
#   sh tests/deps.sh              build and `make check` (OpenWrt's uci and jshn included)
#   sh tests/deps.sh --packaging  also what `make deb` and `make rpm` need, and lintian
#
# Another apt or dpkg at work (unattended-upgrades on a fresh machine) is
# waited for, up to 10 minutes, rather than failed on.
set -eu
packaging=
for arg in "$@"; do
	case $arg in
	--packaging) packaging=1 ;;
	-h | --help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "deps: unknown argument '$arg' (try --packaging)" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" != 0 ]; then
	exec sudo sh "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
# DPkg::Lock::Timeout: apt-get install waits this long for dpkg's lock
# instead of failing at once.
apt_get() {
	apt-get -o DPkg::Lock::Timeout=600 "$@"
}
# apt-get update (apt 2.6) ignores that timeout for the package lists' lock:
# ask again every 5 seconds while another apt holds it, for 10 minutes at most.
apt_update() {
	waited=0
	until out=$(apt_get update -qq 2>&1); do
		case $out in
		*"Could not get lock"*) ;;
		*) printf '%s\n' "$out" >&2; return 1 ;;
		esac
		if [ "$waited" -ge 600 ]; then
			printf '%s\n' "$out" >&2
			return 1
		fi
		[ "$waited" -gt 0 ] || echo "deps: another apt is running; waiting for it" >&2
		sleep 5
		waited=$((waited + 5))
	done
	[ -z "$out" ] || printf '%s\n' "$out"
}
apt_update
apt_get install -y -qq --no-install-recommends \
	build-essential autoconf automake libtool pkg-config \
	libgnutls28-dev libuv1-dev libconfig-dev libcmocka-dev liburing-dev \
	libhiredis-dev redis-server nginx-light libnginx-mod-stream \
	gnutls-bin openssl libcoap3-bin python3 ca-certificates man-db \
	cmake libjson-c-dev >/dev/null
echo "deps: build and test dependencies installed"
if [ -n "$packaging" ]; then
	# debhelper: dh and dh_autoreconf (compat 13); rpm: rpmbuild; systemd:
	# the unit directory (systemd.pc) and systemd-analyze for the unit's check.
	apt_get install -y -qq --no-install-recommends \
		debhelper dpkg-dev fakeroot lintian rpm systemd >/dev/null
	echo "deps: packaging tools installed (make deb, make rpm)"
fi

#!/bin/sh
# deps: install what building and testing psktun needs on Debian 12 (as root, or through sudo).
set -eu
if [ "$(id -u)" != 0 ]; then
	exec sudo sh "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake libtool pkg-config \
	libgnutls28-dev libuv1-dev libconfig-dev libcmocka-dev \
	libhiredis-dev redis-server nginx-light libnginx-mod-stream \
	gnutls-bin openssl libcoap3-bin python3 ca-certificates >/dev/null
echo "deps: build and test dependencies installed"

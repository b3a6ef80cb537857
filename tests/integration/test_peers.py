#!/usr/bin/env python3
"""The third-party DTLS-PSK peers talk to each other on 127.0.0.1 with the
exact command lines the other integration tests use against psktund (no
psktund here): if one of these fails, the peer changed, not psktun.
Exit 0: all passed, 1: a test failed, 77: peers missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEYS = {'meter-0001': 'secret-key-0001-abcdef', 'meter-0002': 'secret-key-0002-ghijkl'}
TIME_RX = r'^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d\n?$'


def _coap_pair(env, server, client):
    port = h.free_port_pair()
    idfile = h.write_coap_idfile(env.path('ids'), KEYS)
    h.libcoap_server(env, server, port, idfile)
    uri = 'coaps://%s:%d/time' % (h.LO, port + 1)
    for ident, key in KEYS.items():
        rc, out, err = h.coap_client(env, client, uri, ident, key, timeout_s=30)
        eq(rc, 0, 'coap-client-%s exit code' % client)
        if not re.match(TIME_RX, out):
            raise Fail('unexpected /time payload %r' % out)
    # the key is per identity: meter-0002's key does not work for meter-0001
    rc, out, err = h.coap_client(env, client, uri, 'meter-0001', KEYS['meter-0002'], timeout_s=3)
    eq(out, '', 'payload with a wrong key')


def test_coap_client_gnutls_to_coap_server_openssl(env):
    _coap_pair(env, 'openssl', 'gnutls')


def test_coap_client_openssl_to_coap_server_gnutls(env):
    _coap_pair(env, 'gnutls', 'openssl')


def test_openssl_s_client_to_s_server_both_ways(env):
    port = h.free_udp_port()
    key = os.urandom(16)
    srv = h.openssl_s_server(env, port, key, 'meter-0001', quiet=True)
    cli = h.openssl_s_client(env, port, key, 'meter-0001', extra=['-quiet'])
    cli.send(b'uplink-1\n')
    srv.wait_out(rb'uplink-1\n')
    srv.send(b'downlink-1\n')
    cli.wait_out(rb'downlink-1\n')






def test_gnutls_cli_ccm8_to_openssl_s_server(env):
    port = h.free_udp_port()
    key = os.urandom(16)
    srv = h.openssl_s_server(env, port, key, 'meter-0001', quiet=True)
    cli = h.gnutls_cli(env, port, key, 'meter-0001')
    cli.wait_out(r'- Handshake was completed')
    cli.send(b'to-openssl\n')
    srv.wait_out(rb'to-openssl\n')


if __name__ == '__main__':
    h.main(globals())

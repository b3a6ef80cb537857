#!/usr/bin/env python3
"""psktund as a gateway against third-party DTLS-PSK servers on 127.0.0.1:
libcoap's coap-server (OpenSSL and GnuTLS builds, one key per identity from
an -i file), openssl s_server.  A meter sends plaintext to
the gateway and gets the server's answer back, byte for byte.
Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

# libcoap takes ASCII keys; psktun's key file gets their hex.
KEYS = {'meter-0001': 'coap-key-0001-abcdefgh', 'meter-0002': 'coap-key-0002-ijklmnop'}
TIME_RX = re.compile(rb'^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d$')
CONTENT = h.coap_code(2, 5)


def _gateway_vs_coap_server(env, flavour):
    h.psktund()
    port = h.free_port_pair()
    h.libcoap_server(env, flavour, port, h.write_coap_idfile(env.path('ids'), KEYS))
    m1, m2 = env.meter(name='meter-0001'), env.meter(name='meter-0002')
    gw = h.gateway(env, KEYS, [('meter-0001', m1.source), ('meter-0002', m2.source)],
                   '%s:%d' % (h.LO, port + 1))
    # What the server answers to GET / over plain CoAP is what must come back.
    want = h.coap_decode(h.coap_direct(port, h.coap_get(0x0101, b'dir', '/')))
    eq(want['code'], CONTENT, 'direct GET / code')

    r1 = h.coap_decode(m1.request(h.coap_get(0x1001, b'\x01\x02', '/'), gw.addr))
    eq((r1['type'], r1['code'], r1['mid'], r1['token']), (h.COAP_ACK, CONTENT, 0x1001, b'\x01\x02'),
       'meter-0001 GET / reply header')
    eq(r1['payload'], want['payload'], 'meter-0001 GET / payload')

    r2 = h.coap_decode(m2.request(h.coap_get(0x2001, b'\xaa', 'time'), gw.addr))
    eq((r2['type'], r2['code'], r2['mid'], r2['token']), (h.COAP_ACK, CONTENT, 0x2001, b'\xaa'),
       'meter-0002 GET /time reply header')
    if not TIME_RX.match(r2['payload']):
        raise Fail('GET /time payload %r' % r2['payload'])

    # a second request on each established session
    r1b = h.coap_decode(m1.request(h.coap_get(0x1002, b'\x03', 'time'), gw.addr))
    eq((r1b['code'], r1b['mid'], r1b['token']), (CONTENT, 0x1002, b'\x03'), 'meter-0001 2nd reply')

    st = gw.stats()
    eq({k: st[k] for k in ('sessions', 'handshakes_completed', 'handshakes_failed', 'plain_in',
                           'plain_out', 'dropped_unknown', 'dropped_malformed', 'dropped_overflow')},
       dict(sessions=2, handshakes_completed=2, handshakes_failed=0, plain_in=3, plain_out=3,
            dropped_unknown=0, dropped_malformed=0, dropped_overflow=0), 'gateway stats')
    eq(sorted(s['identity'] for s in gw.established()), ['meter-0001', 'meter-0002'],
       'established sessions')


def test_gateway_to_coap_server_openssl_one_key_per_identity(env):
    _gateway_vs_coap_server(env, 'openssl')


def test_gateway_to_coap_server_gnutls_one_key_per_identity(env):
    _gateway_vs_coap_server(env, 'gnutls')


def test_coap_client_notls_through_gateway_to_coap_server(env):
    """libcoap's own plain client as the meter (source matched by IP only)."""
    h.psktund()
    port = h.free_port_pair()
    h.libcoap_server(env, 'gnutls', port, h.write_coap_idfile(env.path('ids'), KEYS))
    gw = h.gateway(env, KEYS, [('meter-0001', h.LO)], '%s:%d' % (h.LO, port + 1))
    rc, direct, _ = h.coap_client(env, 'notls', 'coap://%s:%d/' % (h.LO, port), name='direct')
    eq(rc, 0, 'direct coap-client-notls exit code')
    if not direct.startswith('This is a test server'):
        raise Fail('unexpected / payload %r' % direct)
    rc, via, _ = h.coap_client(env, 'notls', 'coap://%s/' % gw.addr, name='via-gateway')
    eq(rc, 0, 'coap-client-notls via the gateway exit code')
    eq(via, direct, 'GET / through the gateway')
    st = gw.stats()
    eq((st['handshakes_completed'], st['plain_in'], st['plain_out']), (1, 1, 1),
       'handshakes_completed, plain_in, plain_out')


def test_gateway_to_openssl_s_server_both_directions(env):
    h.psktund()
    port = h.free_udp_port()
    key = os.urandom(16)
    srv = h.openssl_s_server(env, port, key, 'meter-0001', quiet=True)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, {'meter-0001': key}, [('meter-0001', m.source)], '%s:%d' % (h.LO, port))
    m.send(b'uplink-1\n', gw.addr)
    srv.wait_out(rb'^uplink-1\n')
    gw.wait_stat('handshakes_completed', 1)
    srv.send(b'downlink-1\n')
    eq(m.recv()[0], b'downlink-1\n', 'downlink payload')
    m.send(b'uplink-2\n', gw.addr)
    srv.wait_out(rb'^uplink-1\nuplink-2\n')
    srv.send(b'downlink-2\n')
    eq(m.recv()[0], b'downlink-2\n', 'second downlink payload')
    st = gw.stats()
    eq((st['sessions'], st['handshakes_completed'], st['handshakes_failed'], st['plain_in'],
        st['plain_out']), (1, 1, 0, 2, 2), 'sessions, handshakes ok/failed, plain_in/out')




if __name__ == '__main__':
    h.main(globals())

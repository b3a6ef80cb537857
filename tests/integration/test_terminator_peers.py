#!/usr/bin/env python3
"""psktund as a terminator against third-party DTLS-PSK clients on 127.0.0.1:
coap-client-gnutls and coap-client-openssl -> terminator -> coap-server-notls,
gnutls-cli --udp and openssl s_client -dtls1_2 -> terminator -> UDP echo.
Every reply must come back byte for byte, through the backend.
Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEYS = {'meter-0001': 'term-key-0001-abcdefgh', 'meter-0002': 'term-key-0002-ijklmnop'}


def _coap_client_via_terminator(env, flavour):
    h.psktund()
    port = h.free_port_pair()
    h.libcoap_server(env, 'notls', port, None)
    term = h.terminator(env, KEYS, '%s:%d' % (h.LO, port))
    rc, direct, _ = h.coap_client(env, 'notls', 'coap://%s:%d/' % (h.LO, port), name='direct')
    eq(rc, 0, 'direct coap-client-notls exit code')
    if not direct.startswith('This is a test server'):
        raise Fail('unexpected / payload %r' % direct)
    n = 0
    for ident, key in sorted(KEYS.items()):
        rc, via, log = h.coap_client(env, flavour, 'coaps://%s/' % term.addr, ident, key)
        n += 1
        eq(rc, 0, 'coap-client-%s as %s exit code' % (flavour, ident))
        eq(via, direct, 'GET / through the terminator as %s' % ident)
        term.wait_stat('handshakes_completed', n)
    st = term.stats()
    eq((st['handshakes_completed'], st['handshakes_failed'], st['plain_out'], st['plain_in']),
       (2, 0, 2, 2), 'handshakes ok/failed, plain_out (to backend), plain_in (from backend)')


def test_coap_client_gnutls_through_terminator_to_coap_server(env):
    _coap_client_via_terminator(env, 'gnutls')


def test_coap_client_openssl_through_terminator_to_coap_server(env):
    _coap_client_via_terminator(env, 'openssl')


def test_gnutls_cli_through_terminator_to_echo(env):
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, KEYS, echo.addr)
    cli = h.gnutls_cli(env, term.port, KEYS['meter-0001'], 'meter-0001')
    cli.wait_out(r'- Handshake was completed')
    term.wait_stat('handshakes_completed', 1)
    cli.send(b'hello-1\n')
    cli.wait_out(rb'\necho:hello-1\n')
    cli.send(b'hello-2\n')
    cli.wait_out(rb'\necho:hello-1\necho:hello-2\n')
    eq(echo.payloads(), [b'hello-1\n', b'hello-2\n'], 'what the backend received')
    eq([s['identity'] for s in term.established()], ['meter-0001'], 'established identities')
    st = term.stats()
    eq((st['sessions'], st['handshakes_completed'], st['plain_out'], st['plain_in']), (1, 1, 2, 2),
       'sessions, handshakes_completed, plain_out, plain_in')


def test_openssl_s_client_through_terminator_to_echo(env):
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, KEYS, echo.addr)
    cli = h.openssl_s_client(env, term.port, KEYS['meter-0002'], 'meter-0002', extra=['-quiet'])
    cli.send(b'ossl-1\n')
    cli.wait_out(rb'^echo:ossl-1\n')
    cli.send(b'ossl-2\n')
    cli.wait_out(rb'^echo:ossl-1\necho:ossl-2\n')
    eq(echo.payloads(), [b'ossl-1\n', b'ossl-2\n'], 'what the backend received')
    eq([s['identity'] for s in term.established()], ['meter-0002'], 'established identities')
    st = term.stats()
    eq((st['sessions'], st['handshakes_completed'], st['plain_out'], st['plain_in']), (1, 1, 2, 2),
       'sessions, handshakes_completed, plain_out, plain_in')


def test_two_clients_get_their_own_backend_socket(env):
    """gnutls-cli and s_client at once: each reply maps back to its own client."""
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, KEYS, echo.addr)
    a = h.gnutls_cli(env, term.port, KEYS['meter-0001'], 'meter-0001')
    b = h.openssl_s_client(env, term.port, KEYS['meter-0002'], 'meter-0002', extra=['-quiet'])
    a.wait_out(r'- Handshake was completed')
    a.send(b'from-a\n')
    b.send(b'from-b\n')
    a.wait_out(rb'\necho:from-a\n')
    b.wait_out(rb'^echo:from-b\n')
    if b'from-b' in a.out.buf or b'from-a' in b.out.buf:
        raise Fail('a reply went to the wrong client')
    eq(len({src for _, src in echo.got}), 2, 'distinct backend source addresses')
    eq(sorted(s['identity'] for s in term.established()), ['meter-0001', 'meter-0002'],
       'established identities')


if __name__ == '__main__':
    h.main(globals())

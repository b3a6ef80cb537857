#!/usr/bin/env python3
"""What psktund refuses, while it keeps serving the good meter: a wrong key
and an unknown identity (terminator and gateway side), an unknown LAN source
(dropped, counted, never answered), garbage at the terminator.
Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

GOOD = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(16)}


# A wrong key shows only in the Finished message, which the other side
# cannot decrypt; DTLS discards such records silently (RFC 6347 4.1.2.7),
# so a refused handshake ends when dtls.handshake_timeout_s runs out.
HS_TIMEOUT = 2
DTLS = {'retransmit_ms': 500, 'handshake_timeout_s': HS_TIMEOUT}


def _failure_reasons(d):
    """(identity, reason) of each handshake failure line in the log."""
    return re.findall(r'handshake with (\S+) at 127\.0\.0\.1:\d+ failed: ([^\n]*)', d.log_text())


def test_terminator_refuses_wrong_key_and_unknown_identity_alike(env):
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, GOOD, echo.addr, dtls=DTLS)
    good = h.gnutls_cli(env, term.port, GOOD['meter-0001'], 'meter-0001', name='good')
    good.wait_out(r'- Handshake was completed')
    good.send(b'before\n')
    good.wait_out(rb'\necho:before\n')

    bad_key = os.urandom(16)
    wrong = h.gnutls_cli(env, term.port, bad_key, 'meter-0002', name='wrong-key')
    unknown = h.gnutls_cli(env, term.port, bad_key, 'meter-9999', name='unknown-identity')
    ossl = h.openssl_s_client(env, term.port, bad_key, 'meter-0002', name='s_client-wrong-key',
                              extra=['-quiet'])
    term.wait_stat('handshakes_failed', 3, timeout=HS_TIMEOUT + h.T)
    for c in (wrong, unknown):
        if 'Handshake was completed' in c.out.text():
            raise Fail('%s: handshake completed' % c.name)
    # No way to tell an unknown identity from a wrong key: the client saw
    # the very same thing (no early alert for the unknown identity); only
    # the terminator's log and counters tell them apart. The two wrong-key
    # failures of meter-0002 within a minute are one log line.
    eq(unknown.out.text() + unknown.err.text(), wrong.out.text() + wrong.err.text(),
       'what gnutls-cli saw with an unknown identity vs a wrong key')
    # the counter is read over the control socket, the log through a pipe
    # and a reader thread: the last line may come a moment after the count
    h.await_condition(lambda: len(_failure_reasons(term)) >= 2, 'two failure lines in the log')
    eq(sorted(_failure_reasons(term)),
       [('meter-0002', "the client's Finished did not verify: wrong key?"),
        ('meter-9999', 'unknown identity')], 'failure lines in the log')
    st = term.stats()
    eq((st['handshake_failures.wrong_key'], st['handshake_failures.unknown_identity']), (2, 1),
       'handshake_failures.wrong_key, .unknown_identity')
    if b'echo:' in ossl.out.buf:
        raise Fail('s_client with a wrong key got through')

    good.send(b'after\n')
    good.wait_out(rb'\necho:before\necho:after\n')
    eq(echo.payloads(), [b'before\n', b'after\n'], 'backend received')
    st = term.stats()
    eq((st['sessions'], st['handshakes_completed'], st['handshakes_failed']), (1, 1, 3),
       'sessions, handshakes_completed, handshakes_failed')
    eq([(s['identity'], s['state']) for s in term.sessions()], [('meter-0001', 'established')],
       'terminator sessions')
    for ident in ('meter-0002', 'meter-9999'):
        if re.search(r'session %s up' % ident, term.log_text()):
            raise Fail('a session for %s came up' % ident)


def test_gateway_with_wrong_key_gets_no_session_good_meter_served(env):
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, GOOD, echo.addr, dtls=DTLS)
    good, bad = env.meter(name='meter-0001'), env.meter(name='meter-0002')
    gw_keys = {'meter-0001': GOOD['meter-0001'], 'meter-0002': os.urandom(16)}   # not the terminator's
    gw = h.gateway(env, gw_keys, [('meter-0001', good.source), ('meter-0002', bad.source)], term.addr,
                   dtls=DTLS)
    bad.send(b'never-delivered', gw.addr)
    h.wait_until(lambda: gw.stats()['handshakes_failed'] >= 1, HS_TIMEOUT + h.T,
                 'gateway handshakes_failed >= 1')
    h.wait_until(lambda: term.stats()['handshakes_failed'] >= 1, HS_TIMEOUT + h.T,
                 'terminator handshakes_failed >= 1')
    eq(good.request(b'good-1', gw.addr), b'E:good-1', 'good meter reply')
    eq(echo.payloads(), [b'good-1'], 'backend received only the good meter')
    eq(bad.pending(), [], 'bad meter received')
    # The gateway tries meter-0002 again and again (backoff), so a handshake
    # of it may be running at the terminator when the sessions are listed:
    # never an established session.
    sessions = [(s['identity'], s['state']) for s in term.sessions()]
    eq([x for x in sessions if x[1] != 'handshaking'], [('meter-0001', 'established')],
       'terminator sessions not handshaking (all: %r)' % sessions)
    states = {s['identity']: s['state'] for s in gw.sessions()}
    eq(states['meter-0001'], 'established', 'gateway meter-0001 state')
    if states.get('meter-0002') == 'established':
        raise Fail('gateway meter-0002 established with a wrong key')
    eq(gw.stats()['handshakes_completed'], 1, 'gateway handshakes_completed')
    eq(term.stats()['handshakes_completed'], 1, 'terminator handshakes_completed')


def test_gateway_drops_unknown_source_counts_never_answers(env):
    h.psktund()
    n = 5
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, GOOD, echo.addr)
    good, stranger = env.meter(name='meter-0001'), env.meter(name='stranger')
    gw = h.gateway(env, GOOD, [('meter-0001', good.source)], term.addr)
    for i in range(n):
        stranger.send(b'who-am-i-%d' % i, gw.addr)
    gw.wait_stat('dropped_unknown', n)
    st = gw.stats()
    eq((st['plain_in'], st['sessions'], st['handshakes_started']), (n, 0, 0),
       'plain_in, sessions, handshakes_started after the stranger')
    eq(good.request(b'good', gw.addr), b'E:good', 'good meter reply')
    # The good meter's reply came after the stranger's datagrams were handled:
    # an answer to the stranger would be waiting by now.
    eq(stranger.pending(), [], 'datagrams to the stranger')
    eq(echo.payloads(), [b'good'], 'backend received')
    st = gw.stats()
    eq((st['dropped_unknown'], st['plain_in'], st['plain_out'], st['sessions']), (n, n + 1, 1, 1),
       'dropped_unknown, plain_in, plain_out, sessions')


def test_terminator_drops_garbage_never_answers(env):
    h.psktund()
    echo = env.echo()
    term = h.terminator(env, GOOD, echo.addr)
    s = env.meter(name='garbage')
    for i in range(3):
        s.send(b'\x17\xfe\xfd' + bytes(10) + b'not a record %d' % i, term.addr)   # app data, no session
    s.send(b'\x16\xfe', term.addr)                                               # shorter than a header
    term.wait_stat('dropped_unknown', 3)
    term.wait_stat('dropped_malformed', 1)
    st = term.stats()
    eq((st['sessions'], st['handshakes_started'], st['cookies_sent']), (0, 0, 0),
       'sessions, handshakes_started, cookies_sent')
    # a real client is still served, and the garbage sender got nothing
    cli = h.gnutls_cli(env, term.port, GOOD['meter-0001'], 'meter-0001')
    cli.wait_out(r'- Handshake was completed')
    eq(s.pending(), [], 'answers to the garbage sender')
    eq(echo.payloads(), [], 'backend received')


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""meter -> psktund gateway -> psktund terminator -> UDP echo backend and
back: several meters at once, each with its own identity and key, exact
payloads in order, exact counters on both daemons.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402

N_METERS = 3
N_MSGS = 3
COUNTERS = ('sessions', 'handshakes_completed', 'handshakes_failed', 'plain_in', 'plain_out',
            'dropped_unknown', 'dropped_malformed', 'dropped_policy', 'dropped_overflow')


def _pick(st, names=COUNTERS):
    return {k: st[k] for k in names}


def _setup(env, n):
    keys = {'meter-%04d' % (i + 1): os.urandom(16 + i) for i in range(n)}
    meters = [env.meter(name=ident) for ident in keys]
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [(ident, m.source) for ident, m in zip(keys, meters)], term.addr)
    return keys, meters, echo, term, gw


def test_meters_round_trip_through_gateway_and_terminator(env):
    h.psktund()
    keys, meters, echo, term, gw = _setup(env, N_METERS)
    sent = {}
    # Every meter fires all its datagrams at once, before any handshake is
    # done: they wait in the session's queue and must leave in order.
    for i, m in enumerate(meters):
        sent[m.name] = [b'%s/%d/' % (m.name.encode(), j) + os.urandom(8 + j) for j in range(N_MSGS)]
        for p in sent[m.name]:
            m.send(p, gw.addr)
    for m in meters:
        got = [m.recv()[0] for _ in range(N_MSGS)]
        eq(got, [b'E:' + p for p in sent[m.name]], '%s replies' % m.name)
    eq(sorted(echo.payloads()), sorted(p for ps in sent.values() for p in ps), 'backend received')
    # one backend socket per session
    eq(len({src for _, src in echo.got}), N_METERS, 'distinct backend sources')

    total = N_METERS * N_MSGS
    eq(_pick(gw.stats()), dict(sessions=N_METERS, handshakes_completed=N_METERS, handshakes_failed=0,
                               plain_in=total, plain_out=total, dropped_unknown=0,
                               dropped_malformed=0, dropped_policy=0, dropped_overflow=0),
       'gateway stats')
    eq(_pick(term.stats()), dict(sessions=N_METERS, handshakes_completed=N_METERS,
                                 handshakes_failed=0, plain_in=total, plain_out=total,
                                 dropped_unknown=0, dropped_malformed=0, dropped_policy=0,
                                 dropped_overflow=0), 'terminator stats')
    eq(sorted((s['identity'], s['state']) for s in gw.sessions()),
       [(k, 'established') for k in sorted(keys)], 'gateway sessions')
    eq(sorted((s['identity'], s['state']) for s in term.sessions()),
       [(k, 'established') for k in sorted(keys)], 'terminator sessions')
    for s in gw.sessions():
        eq((s['plain_in'], s['plain_out']), (str(N_MSGS), str(N_MSGS)),
           'gateway session %s plain_in/out' % s['identity'])

    # established sessions carry more traffic without new handshakes
    for m in meters:
        p = b'again:' + m.name.encode()
        eq(m.request(p, gw.addr), b'E:' + p, '%s second round' % m.name)
    eq(gw.stats()['handshakes_completed'], N_METERS, 'gateway handshakes after second round')
    eq(term.stats()['handshakes_completed'], N_METERS, 'terminator handshakes after second round')


def test_meter_from_new_source_port_keeps_session_and_gets_replies_there(env):
    """source = IP only: the meter may come back from another port; the
    reply goes to its latest source and no new handshake happens."""
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', h.LO)], term.addr)
    a, b = env.meter(name='port-a'), env.meter(name='port-b')
    eq(a.request(b'from-a', gw.addr), b'E:from-a', 'reply to port a')
    eq(b.request(b'from-b', gw.addr), b'E:from-b', 'reply to port b')
    eq(a.pending(), [], 'nothing more at port a')
    st = gw.stats()
    eq((st['sessions'], st['handshakes_completed'], st['plain_in'], st['plain_out']), (1, 1, 2, 2),
       'gateway sessions, handshakes_completed, plain_in, plain_out')


def test_time_to_first_answer(env):
    """Measured, printed for the record: a cold meter's first datagram pays
    for the gateway's handshake; later ones don't."""
    h.psktund()
    keys, meters, echo, term, gw = _setup(env, 1)
    m = meters[0]
    t0 = time.monotonic()
    eq(m.request(b'first', gw.addr), b'E:first', 'first reply')
    first = time.monotonic() - t0
    t0 = time.monotonic()
    eq(m.request(b'second', gw.addr), b'E:second', 'second reply')
    second = time.monotonic() - t0
    print('time to first answer through gateway+terminator (handshake included): %.1f ms; '
          'next answer: %.2f ms' % (first * 1000, second * 1000), flush=True)
    h.log('first %.1f ms, second %.2f ms' % (first * 1000, second * 1000))
    eq(gw.stats()['handshakes_completed'], 1, 'handshakes_completed')


def test_keys_never_reach_the_log_at_any_verbosity(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(20)}
    m1 = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    dtls = {'retransmit_ms': 500, 'handshake_timeout_s': 1}
    term = h.terminator(env, keys, echo.addr, verbose=4, dtls=dtls)
    gw_keys = dict(keys, **{'meter-0002': os.urandom(20)})     # one wrong key, to log a failure
    m2 = env.meter(name='meter-0002')
    gw = h.gateway(env, gw_keys, [('meter-0001', m1.source), ('meter-0002', m2.source)], term.addr,
                   verbose=4, dtls=dtls)
    eq(m1.request(b'k', gw.addr), b'E:k', 'reply')
    m2.send(b'x', gw.addr)
    h.wait_until(lambda: term.stats()['handshakes_failed'] >= 1, h.T, 'terminator handshakes_failed >= 1')
    eq(gw.reload(), 'configuration reloaded', 'reload')
    for d in (gw, term):
        eq(d.terminate(), 0, '%s exit code' % d.name)
        text = d.log_text().lower()
        with d.err.cond:
            raw = bytes(d.err.buf)
        for k in list(keys.values()) + list(gw_keys.values()):
            if k.hex() in text or k.hex()[:16] in text:
                raise h.Fail('%s logged a key in hex' % d.name)
            if k in raw or k[:8] in raw:
                raise h.Fail('%s logged a key raw' % d.name)


def test_large_datagram_round_trips(env):
    h.psktund()
    keys, meters, echo, term, gw = _setup(env, 1)
    p = bytes(range(256)) * 4     # 1024 bytes, every byte value
    eq(meters[0].request(p, gw.addr), b'E:' + p, '1024-byte payload')


if __name__ == '__main__':
    h.main(globals())

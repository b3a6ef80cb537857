#!/usr/bin/env python3
"""Nothing lost at a rebinding: the gateway sends again what went on a dead path.

meters -> psktund gateway -> badlink -> psktund terminator -> echo. The
badlink rebinds (a carrier NAT gives the router a new port): the terminator
has no session for the new address, drops what arrives and answers with its
lost-session alert. The datagrams the gateway sent since the last
authenticated answer never reached the backend; the gateway keeps a bounded
copy (the newest 4, 2 KiB, 30 s) and sends them again on the new session.
A meter that sends once and never again (a QoS 0 reading) loses nothing:
the backend gets every datagram exactly once, in order.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402
from badlink import BadLink  # noqa: E402


def _setup(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    bl = BadLink(upstream=(h.LO, term.port), max_flows=64)
    env.defer(bl.stop)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, keys, [('meter-0001', m.source)], '%s:%d' % bl.listen_addr)
    eq(m.request(b'first', gw.addr), b'E:first', 'first reply')
    return m, echo, term, bl, gw


def test_a_datagram_sent_once_on_a_dead_path_reaches_the_backend(env):
    m, echo, term, bl, gw = _setup(env)
    bl.rebind()
    m.send(b'reading-1', gw.addr)       # once: no retransmission
    eq(m.recv()[0], b'E:reading-1', 'reply to the reading sent on the dead path')
    echo.wait_count(2)
    eq(echo.payloads(), [b'first', b'reading-1'], 'backend received, each once')
    st = gw.stats()
    eq((st['replayed'], st['rehandshakes'], st['handshakes_completed'], st['handshakes_resumed']),
       (1, 1, 2, 1), 'gateway replayed, rehandshakes, handshakes_completed, handshakes_resumed')
    eq(term.stats()['lost_session_alerts'], 1, 'terminator lost_session_alerts')


def test_only_what_went_unanswered_is_sent_again_and_at_most_four(env):
    """Answered datagrams are not kept; of six sent on the dead path (the
    alerts held back meanwhile), the newest four are sent again."""
    m, echo, term, bl, gw = _setup(env)
    eq(m.request(b'answered', gw.addr), b'E:answered', 'second reply')
    sent = [b'r%d' % i for i in range(1, 7)]
    bl.set_down(True, 'down')           # the alerts do not come back yet
    bl.rebind()
    for p in sent[:-1]:
        m.send(p, gw.addr)
    h.wait_until(lambda: term.stats()['dropped_unknown'] == len(sent) - 1, h.T,
                 'terminator dropped_unknown == %d' % (len(sent) - 1))
    bl.set_down(False, 'down')
    m.send(sent[-1], gw.addr)           # its alert comes back: a new session, and the replay
    got = sorted(m.recv()[0] for _ in range(4))
    eq(got, sorted(b'E:' + p for p in sent[-4:]), 'replies to the newest four')
    echo.wait_count(6)
    eq(echo.payloads(), [b'first', b'answered'] + sent[-4:], 'backend received, each once, in order')
    eq(gw.stats()['replayed'], 4, 'gateway replayed')


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""The gateway's dead-path probe (dtls.path_timeout_s, RFC 6520 heartbeats)
against third-party DTLS servers, across session resumption.

A resumed ServerHello carries no heartbeat extension (GnuTLS repeats none of
the extensions it resumes), so the gateway keeps the agreement with the
resumption data (dtls.c: HEARTBEAT_MARK), as GnuTLS keeps the heartbeat mode
in its own session data. The mark can only be stale for a server that
resumes a session it did not agree heartbeats in; these pin down that none
of the real ones does, and that each is probed exactly when it agreed:

  * gnutls-serv --udp without --heartbeat resumes the session: no probe, no
    dead path, in the first session or the resumed one (probed, it ends the
    session: 3 probes unanswered, a dead path, a rehandshake);
  * gnutls-serv --udp --heartbeat resumes it: the resumed session is probed
    and the server answers (a rule of "only this ServerHello" would lose the
    probe on every resumed session);
  * the cloud replaced (same address) after a session that agreed, by
    gnutls-serv without --heartbeat or by openssl s_server -dtls1_2 -nocert
    -psk: the resumption data is marked, but neither server can resume it:
    a full handshake, whose ServerHello decides: no probe (a mark kept over
    it: gnutls-serv lets the pings go unanswered, a dead path; s_server
    ends the session with a fatal alert).

gnutls-serv echoes every record and listens on every address (it has no
option to bind one), so this file runs itself in a network namespace of its
own (unshare -rn, only `lo` up), and a relay (badlink.py) drops the
server's application data on its way back: each reading goes unanswered,
as a one-way meter's does, which is what arms the probe. Heartbeats pass.
Each session ends at idle_timeout_s, after path_timeout_s and all the
probe's tries would have run: the idle close is the event awaited.
Exit 0: all passed, 1: a test failed, 77: psktund, a peer or namespaces
missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402
from test_spoofed import in_own_netns  # noqa: E402

KEYS = {'meter-0001': bytes(range(16))}
# probe at 1 s, its tries at 1.25, 1.5, dead at 1.75 s; idle close at 3 s
PROBE = {'retransmit_ms': 250, 'handshake_timeout_s': 20, 'path_timeout_s': 1, 'idle_timeout_s': 3}
PROBE_KEYS = ('probes_sent', 'probes_answered', 'dead_paths', 'rehandshakes', 'handshakes_completed',
              'handshakes_resumed')
NO_HEARTBEATS = r'tunnel t1: the cloud does not answer heartbeats \(RFC 6520\): no probe'
APPLICATION_DATA = 23


def gnutls_serv(env, port, heartbeat, name='gnutls-serv'):
    """gnutls-serv --udp: one client at a time, each record echoed;
    heartbeat: --heartbeat (it agrees to them: peer_allowed_to_send)."""
    pskfile = env.path(name + '.psk')
    with open(pskfile, 'w') as f:
        f.write(''.join('%s:%s\n' % (i, k.hex()) for i, k in KEYS.items()))
    # stdbuf: its lines as they come (printf into a pipe is block-buffered)
    argv = ['stdbuf', '-oL', h.need('gnutls-serv'), '--udp', '-p', str(port), '--pskpasswd', pskfile, '--priority', h.PRIO]
    p = env.peer(name, argv + (['--heartbeat'] if heartbeat else []))
    h.wait_udp_bound(port, what='gnutls-serv on UDP port %d' % port)
    return p


class Cloud:
    """A server on a fixed port behind a relay that drops its application
    data (the echo), and a gateway with meter-0001 in front."""

    def __init__(self, env):
        h.psktund()
        self.env = env
        self.port = h.free_udp_port()
        self.lb = BadLink(upstream=(h.LO, self.port), max_flows=64)
        self.lb.drop_if = lambda d, data: d == 'down' and data[:1] == bytes([APPLICATION_DATA])
        env.defer(self.lb.stop)
        self.m = env.meter(name='meter-0001')
        self.gw = h.gateway(env, KEYS, [('meter-0001', self.m.source)], '%s:%d' % self.lb.listen_addr,
                            dtls=dict(PROBE))

    def reading(self, srv, payload, shown):
        """One reading, sent once and never answered; returns when the
        session it went in has closed (idle; or the server ended it, or its
        path was found dead: the counters tell). shown: how the server prints it."""
        mark = self.gw.log_mark()
        self.m.send(payload, self.gw.addr)
        srv.wait_out(shown)
        self.gw.wait_log(r'session meter-0001(?: down \(|: \d probes unanswered)', start=mark)

    def stats(self):
        st = self.gw.stats()
        return dict(zip(PROBE_KEYS, (st[k] for k in PROBE_KEYS)))


def _gnutls_received(payload):
    return rb'received\[[0-9a-f]{16}\]: ' + payload


def _no_session_ended_by(srv):
    """gnutls-serv says 'Error in recv()' when it ends a session (an unexpected heartbeat, say)."""
    m = re.search(r'Error in recv\(\): .*', srv.err.text())
    if m:
        raise Fail('gnutls-serv ended a session: %s' % m.group(0))


def _resumed_by_gnutls_serv(env, heartbeat):
    """A reading in a full handshake, then one in the session resumed:
    probed and answered once in each when the server agreed, never if not."""
    c = Cloud(env)
    srv = gnutls_serv(env, c.port, heartbeat)
    probes = 1 if heartbeat else 0
    c.reading(srv, b'reading-1', _gnutls_received(b'reading-1'))
    eq(c.stats(), dict(probes_sent=probes, probes_answered=probes, dead_paths=0, rehandshakes=0,
                       handshakes_completed=1, handshakes_resumed=0), 'gateway counters after the first session')
    c.reading(srv, b'reading-2', _gnutls_received(b'reading-2'))
    eq(c.stats(), dict(probes_sent=2 * probes, probes_answered=2 * probes, dead_paths=0, rehandshakes=0,
                       handshakes_completed=2, handshakes_resumed=1), 'gateway counters after the resumed session')
    _no_session_ended_by(srv)
    return c


def test_gnutls_serv_without_heartbeats_resumes_unprobed(env):
    _resumed_by_gnutls_serv(env, heartbeat=False).gw.wait_log(NO_HEARTBEATS)


def test_gnutls_serv_with_heartbeats_resumes_and_answers_the_probe(env):
    c = _resumed_by_gnutls_serv(env, heartbeat=True)
    if 'does not answer heartbeats' in c.gw.log_text():
        raise Fail('the gateway said the cloud does not answer heartbeats')


def _replaced(env, start_second, shown):
    """A session that agreed to heartbeats with gnutls-serv --heartbeat, then
    the server replaced on the same port by start_second(port)."""
    c = Cloud(env)
    srv = gnutls_serv(env, c.port, heartbeat=True)
    c.reading(srv, b'reading-1', _gnutls_received(b'reading-1'))
    eq(c.stats(), dict(probes_sent=1, probes_answered=1, dead_paths=0, rehandshakes=0, handshakes_completed=1,
                       handshakes_resumed=0), 'gateway counters after the session with heartbeats')
    srv.stop()
    second = start_second(c.port)
    c.reading(second, b'reading-2', shown)
    eq(c.stats(), dict(probes_sent=1, probes_answered=1, dead_paths=0, rehandshakes=0, handshakes_completed=2,
                       handshakes_resumed=0), 'gateway counters after the replaced server\'s session')
    c.gw.wait_log(NO_HEARTBEATS)


def test_replaced_by_gnutls_serv_without_heartbeats_a_full_handshake_unprobed(env):
    _replaced(env, lambda port: gnutls_serv(env, port, heartbeat=False, name='gnutls-serv-2'),
              _gnutls_received(b'reading-2'))


def test_replaced_by_openssl_s_server_a_full_handshake_unprobed(env):
    _replaced(env, lambda port: h.openssl_s_server(env, port, KEYS['meter-0001'], 'meter-0001'),
              rb'reading-2')


if __name__ == '__main__':
    in_own_netns()
    h.main(globals())

#!/usr/bin/env python3
"""The gateway's dead-path probe (dtls.path_timeout_s, RFC 6520 heartbeats).

A meter that sends one reading and nothing more for 15 minutes gives the
gateway no next datagram to notice a dead path at, and a load balancer in
front of the terminators (nginx stream; here the badlink, a userspace relay
too) swallows the ICMP error of a node that is gone. With path_timeout_s set
the gateway pings the cloud path_timeout_s after an unanswered uplink: a pong
proves the path, three pings retransmit_ms apart unanswered mean a dead path:
a new handshake, and the reading goes again on it.
Exit 0: all passed, 1: a test failed, 77: psktund missing (or one without
hiredis, or redis-server missing, for the kill -9 test)."""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402
from badlink import BadLink  # noqa: E402
import resil  # noqa: E402
from test_session_cache import Redis, _terminator, need_hiredis  # noqa: E402
from test_show import dump_meter  # noqa: E402

KEYS = {'meter-0001': bytes(range(16))}
PROBE = {'retransmit_ms': 250, 'handshake_timeout_s': 20, 'path_timeout_s': 1}
PROBE_KEYS = ('probes_sent', 'probes_answered', 'dead_paths', 'rehandshakes', 'replayed',
              'handshakes_completed', 'handshakes_resumed')


def probe_stats(d):
    st = d.stats()
    return tuple(st[k] for k in PROBE_KEYS)


def _a_reading_into_a_killed_node(env, gw_dtls):
    """A terminator sharing its sessions through Redis, behind a relay that
    swallows ICMP port unreachable as nginx stream does, and a gateway
    (gw_dtls) with meter-0001. The meter's first request is answered and its
    session stored in Redis; then the node is killed (-9) and the meter sends
    one reading, once (it never sends again), into the dead node.
    Returns (echo, term, lb, meter, gw)."""
    h.psktund()
    need_hiredis(env)
    redis = Redis(env).start()
    echo = env.echo(prefix=b'E:')
    term = _terminator(env, 'term', KEYS, echo, redis, os.urandom(32), dtls={'retransmit_ms': 250})
    h.wait_until(lambda: term.stats().get('cache_up') == 1, h.T, 'terminator cache_up=1')
    lb = BadLink(upstream=(h.LO, term.port), max_flows=64)
    env.defer(lb.stop)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, KEYS, [('meter-0001', m.source)], '%s:%d' % lb.listen_addr, dtls=gw_dtls)
    eq(m.request(b'first', gw.addr), b'E:first', 'first reply')
    h.wait_until(lambda: term.stats()['cache_stores'] == 1, h.T, 'terminator cache_stores == 1')
    os.killpg(term.proc.pid, signal.SIGKILL)
    resil._reap(term)
    term.rc = None
    m.send(b'reading-1', gw.addr)
    h.wait_until(lambda: lb.stats()['down']['unreachable'] >= 1, h.T,
                 'the relay swallowed ICMP port unreachable')
    return echo, term, lb, m, gw


def _the_reading_arrives_once(m, echo):
    eq(m.recv()[0], b'E:reading-1', 'reply to the reading sent into the dead path')
    echo.wait_count(2)
    eq(echo.payloads(), [b'first', b'reading-1'], 'backend received, each once')


def test_a_reading_sent_once_into_a_killed_node_reaches_the_backend_by_the_next(env):
    """kill -9 of the terminator behind a relay that swallows ICMP; the meter
    sends one reading into the dead path and never again. The probe finds the
    path dead (3 pings unanswered), the gateway shakes hands again and, once
    the node is back (a new process on the same port, sessions in Redis), the
    handshake is resumed and the reading reaches the backend, once."""
    echo, term, lb, m, gw = _a_reading_into_a_killed_node(env, dict(PROBE))
    h.wait_until(lambda: gw.stats()['dead_paths'] == 1, h.T, 'gateway dead_paths == 1')
    gw.wait_log(r'session meter-0001: 3 probes unanswered: the path to the cloud is dead')
    resil.restart(term)                     # the node is back: the handshake's next ClientHello gets in
    _the_reading_arrives_once(m, echo)
    eq(dict(zip(PROBE_KEYS, probe_stats(gw))),
       dict(zip(PROBE_KEYS, (3, 0, 1, 1, 1, 2, 1))), 'gateway probe and handshake counters')
    st = term.stats()
    eq((st['handshakes_completed'], st['handshakes_resumed'], st['cache_hits']), (1, 1, 1),
       'the restarted terminator: handshakes_completed, handshakes_resumed, cache_hits')


def test_a_node_that_lost_the_session_answers_the_probe_with_its_alert(env):
    """The node is back (or the balancer moved the meter to another) before
    the probe goes: the probe reaches a node without the session, whose
    lost-session alert ends the path at once: one probe, no waiting for the
    other two. path_timeout_s 5: the restart takes a fraction of it."""
    echo, term, lb, m, gw = _a_reading_into_a_killed_node(env, dict(PROBE, path_timeout_s=5))
    resil.restart(term)
    eq(gw.stats()['probes_sent'], 0, 'gateway probes_sent before path_timeout_s')
    _the_reading_arrives_once(m, echo)
    eq(dict(zip(PROBE_KEYS, probe_stats(gw))),
       dict(zip(PROBE_KEYS, (1, 0, 1, 1, 1, 2, 1))), 'gateway probe and handshake counters')
    st = term.stats()
    eq((st['lost_session_alerts'], st['handshakes_completed'], st['handshakes_resumed']), (1, 1, 1),
       'the restarted terminator: lost_session_alerts, handshakes_completed, handshakes_resumed')


def test_a_healthy_idle_path_costs_one_probe_and_its_pong(env):
    """A one-way meter (its backend never answers): one probe, one pong,
    nothing else; the path is proven, no handshake again, and no probe until
    the next uplink. Ping and pong are 49 bytes each on the air (1 payload
    byte, 16 of padding, AES-128-CCM-8)."""
    h.psktund()
    sink = env.udp()
    sink.settimeout(h.T)
    term = h.terminator(env, KEYS, '%s:%d' % (h.LO, sink.getsockname()[1]), dtls={'retransmit_ms': 250})
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, KEYS, [('meter-0001', m.source)], term.addr, dtls=dict(PROBE, idle_timeout_s=3))
    m.send(b'reading-1', gw.addr)
    eq(sink.recvfrom(100)[0], b'reading-1', 'backend got the reading')
    h.wait_until(lambda: gw.stats()['handshakes_completed'] == 1, h.T, 'gateway handshakes_completed == 1')
    g0 = dump_meter(gw, 'meter-0001')
    h.wait_until(lambda: gw.stats()['probes_answered'] == 1, h.T, 'gateway probes_answered == 1')
    g1 = dump_meter(gw, 'meter-0001')
    eq(dict(zip(PROBE_KEYS, probe_stats(gw))),
       dict(zip(PROBE_KEYS, (1, 1, 0, 0, 0, 1, 0))), 'gateway probe and handshake counters')
    eq([int(g1[k]) - int(g0[k]) for k in ('air_out_bytes', 'air_out', 'air_in_bytes', 'air_in')],
       [49, 1, 49, 1], 'on the air: the ping and its pong')
    # the next reading after an idle close: a resumed session, probed as well
    gw.wait_log(r'session meter-0001 down \(idle')
    m.send(b'reading-2', gw.addr)
    eq(sink.recvfrom(100)[0], b'reading-2', 'backend got the next reading')
    h.wait_until(lambda: gw.stats()['probes_answered'] == 2, h.T, 'gateway probes_answered == 2')
    eq(dict(zip(PROBE_KEYS, probe_stats(gw))),
       dict(zip(PROBE_KEYS, (2, 2, 0, 0, 0, 2, 1))), 'gateway counters after the next reading')


def _handshake_bytes(env, dtls, tag):
    """Air bytes (both directions, UDP payload) of a full handshake with the
    cookie and of a resumed one, from the gateway's `show`, for an identity of
    11 characters (README's table)."""
    ident = 'meter-00001'
    keys = {ident: KEYS['meter-0001']}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, name='terminator-' + tag,
                        dtls={'retransmit_ms': 5000, 'idle_timeout_s': 60}, verbose=0)
    m = env.meter(name=ident)
    gw = h.gateway(env, keys, [(ident, m.source)], term.addr, name='gateway-' + tag,
                   dtls=dict(dtls, retransmit_ms=5000, idle_timeout_s=1), verbose=0)
    eq(m.request(b'x', gw.addr), b'E:x', 'first reply')
    g = dump_meter(gw, ident)
    full = int(g['air_out_bytes']) + int(g['air_in_bytes']) - (1 + 29) - (3 + 29)
    gw.wait_log(r'session %s down \(idle' % ident)
    g0 = dump_meter(gw, ident)
    eq(m.request(b'y', gw.addr), b'E:y', 'reply after the idle close')
    g1 = dump_meter(gw, ident)
    resumed = sum(int(g1[k]) - int(g0[k]) for k in ('air_out_bytes', 'air_in_bytes')) - (1 + 29) - (3 + 29)
    eq(gw.stats()['handshakes_resumed'], 1, 'gateway handshakes_resumed')
    return full, resumed


def test_handshake_bytes_default_and_with_the_probe(env):
    """Default (path_timeout_s = 0): not a byte more than before, 553 B with
    the cookie, 370 B resumed. With the probe on, the heartbeat extension costs
    5 bytes in each ClientHello and 5 in the ServerHello of a full handshake (a resumed one
    does not repeat it)."""
    h.psktund()
    eq(_handshake_bytes(env, {}, 'default'), (553, 370), 'full and resumed handshake bytes, default')
    eq(_handshake_bytes(env, {'path_timeout_s': 60}, 'probe'), (553 + 15, 370 + 5),
       'full and resumed handshake bytes, path_timeout_s set')


def test_a_cloud_without_heartbeats_falls_back_and_says_so_once(env):
    """openssl s_server answers no heartbeat: no probe is sent (it would end
    the session), the log says so once; path_timeout_s works as before (at
    the next datagram: s_server takes no second client, so not shown here)."""
    h.need('openssl')
    port = h.free_udp_port()
    srv = h.openssl_s_server(env, port, KEYS['meter-0001'], 'meter-0001')
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, KEYS, [('meter-0001', m.source)], '%s:%d' % (h.LO, port), dtls=dict(PROBE))
    m.send(b'hello\n', gw.addr)
    srv.wait_out(r'hello')
    gw.wait_log(r'tunnel t1: the cloud does not answer heartbeats \(RFC 6520\): no probe')
    time.sleep(PROBE['path_timeout_s'] + 0.5)   # the timeout itself: no event to await
    eq(gw.stats()['probes_sent'], 0, 'gateway probes_sent')
    eq(len(re.findall(r'does not answer heartbeats', gw.log_text())), 1, 'log lines')


if __name__ == '__main__':
    h.main(globals())

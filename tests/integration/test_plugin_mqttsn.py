#!/usr/bin/env python3
"""The MQTT-SN v1.2 plugin (plugin = "mqttsn") on loopback, with the test
client mqttsn_client.py as the meter and a UDP backend that records the
exact bytes it gets: a meter named by its CONNECT's ClientId, unknown
ClientIds dropped, CONNECT refusals (CONNACK 0x03) at the gateway and at
the terminator, SEARCHGW answered on the LAN, Forwarder Encapsulation
toward the backend, keep-alive and DISCONNECT versus the idle timeout,
ADVERTISE, and an unanswered CONNECT reported silent.
Exit 0: all passed, 1: a test failed, 77: psktund or the plugin missing."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
import mqttsn_client as sn  # noqa: E402

KEYS = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(16)}
# How long to listen for a datagram that must not come (never for something awaited).
ABSENCE_S = 0.5
COUNTERS = ('sessions', 'handshakes_started', 'handshakes_completed', 'plain_in', 'plain_out',
            'records_out', 'replies_local', 'dropped_unknown', 'dropped_malformed',
            'dropped_policy', 'dropped_overflow')


def _pick(st, names=COUNTERS):
    return {k: st[k] for k in names}


def _setup(env):
    h.psktund()
    h.psktunctl()
    pdir = h.plugin_dir(env)
    if not os.path.exists(os.path.join(pdir, 'mqttsn.so')):
        raise h.Skip('mqttsn.so not built under PLUGIN_BUILD_DIR')
    return pdir


def _daemon(env, pdir, name, mode, connect, options=None, meters=(), dtls=None, plugin='mqttsn'):
    """psktund with one tunnel `t1` (plugin `plugin` with `options`) on a fresh port."""
    port = h.free_udp_port()
    tunnel = dict(name='t1', accept='%s:%d' % (h.LO, port), connect=connect)
    if plugin:
        tunnel.update(plugin=plugin, options=options or {})
    d = env.daemon(name, mode, [tunnel], KEYS, meters=meters, dtls=dtls, plugin_dir=pdir)
    d.port = port
    d.addr = '%s:%d' % (h.LO, port)
    return d


def _backend(env):
    b = sn.Backend((h.LO, 0))
    env.defer(b.client.close)
    return b


def _client(env, gw):
    c = sn.Client((h.LO, gw.port))
    env.defer(c.close)
    return c


def _backend_got(b, want, what, timeout=h.T):
    """The next datagram at the backend: its exact bytes must be `want`; returns its source."""
    got = b.client.recv_raw(timeout)
    if got is None:
        raise Fail('%s: nothing reached the backend within %.1fs' % (what, timeout))
    h.log('backend: got %r from %r' % got)
    eq(got[0], want, what)
    return got[1]


def _backend_quiet(b, what):
    got = b.client.recv_raw(ABSENCE_S)
    if got is not None:
        raise Fail('%s: the backend got %r from %r' % (what, got[0], got[1]))


def _client_quiet(c, what):
    got = c.recv_raw(ABSENCE_S)
    if got is not None:
        raise Fail('%s: the client got %r from %r' % (what, got[0], got[1]))


def _expect_raw(c, want, what, timeout=h.T):
    got = c.recv_raw(timeout)
    if got is None:
        raise Fail('%s: nothing within %.1fs' % (what, timeout))
    h.log('client %r: got %r from %r' % (c.address, got[0], got[1]))
    eq(got[0], want, what)
    return got[1]


def _chain(env, pdir, gw_options=None, term_options=None, meters=(), gw_dtls=None, gw_plugin='mqttsn'):
    backend = _backend(env)
    term = _daemon(env, pdir, 'terminator', 'terminator', '%s:%d' % backend.address,
                   options=term_options)
    gw = _daemon(env, pdir, 'gateway', 'gateway', term.addr, options=gw_options, meters=meters,
                 dtls=gw_dtls, plugin=gw_plugin)
    return backend, term, gw


def test_connect_names_the_meter_and_crosses_byte_for_byte(env):
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir)
    c = _client(env, gw)
    conn = sn.connect('meter-0001', duration=60)
    c.send(conn)
    src = _backend_got(backend, conn, 'CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK at the client')
    # the source is bound now: a PUBLISH (no ClientId) goes into the same session
    pub = sn.publish(5, b'21.5', msg_id=2, qos=1)
    c.send(pub)
    eq(_backend_got(backend, pub, 'PUBLISH at the backend'), src, 'backend socket for the session')
    backend.reply(sn.puback(5, 2), src)
    _expect_raw(c, sn.puback(5, 2), 'PUBACK at the client')

    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway sessions (identity learned from the ClientId)')
    eq([(s['identity'], s['state']) for s in term.sessions()], [('meter-0001', 'established')],
       'terminator sessions')
    eq(_pick(gw.stats(), ('sessions', 'handshakes_completed', 'plain_in', 'plain_out',
                          'replies_local', 'dropped_unknown', 'dropped_policy', 'dropped_malformed')),
       dict(sessions=1, handshakes_completed=1, plain_in=2, plain_out=2, replies_local=0,
            dropped_unknown=0, dropped_policy=0, dropped_malformed=0), 'gateway stats')
    eq(_pick(term.stats(), ('sessions', 'handshakes_completed', 'plain_in', 'plain_out',
                            'dropped_policy')),
       dict(sessions=1, handshakes_completed=1, plain_in=2, plain_out=2, dropped_policy=0),
       'terminator stats')


def test_unknown_client_id_dropped_nothing_crosses(env):
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir)
    c = _client(env, gw)
    c.send(sn.connect('meter-9999'))                  # not in the key file
    gw.wait_stat('dropped_unknown', 1)
    c.send(sn.publish(5, b'x', msg_id=1, qos=1))      # names nobody, from an unbound source
    gw.wait_stat('dropped_unknown', 2)
    c.send(b'\x05\x04\x04\x01')                        # a cut CONNECT: malformed
    gw.wait_stat('dropped_malformed', 1)
    _backend_quiet(backend, 'after an unknown ClientId')
    _client_quiet(c, 'after an unknown ClientId')
    eq(_pick(gw.stats()), dict(sessions=0, handshakes_started=0, handshakes_completed=0,
                               plain_in=3, plain_out=0, records_out=0, replies_local=0,
                               dropped_unknown=2, dropped_malformed=1, dropped_policy=0,
                               dropped_overflow=0), 'gateway stats')
    eq(term.stats()['handshakes_started'] + term.stats()['cookies_sent'], 0,
       'terminator handshakes_started + cookies_sent')


def test_gateway_refuses_connect_with_another_client_id(env):
    """A source bound to meter-0001 (meters entry) says CONNECT meter-0002:
    CONNACK 0x03 from the gateway itself, dropped_policy, nothing crosses."""
    pdir = _setup(env)
    c = sn.Client((h.LO, 0))        # the server is set once the gateway's port is known
    env.defer(c.close)
    source = '%s:%d' % c.address
    backend, term, gw = _chain(env, pdir, meters=[('meter-0001', source)])
    c.server = (h.LO, gw.port)
    conn = sn.connect('meter-0001')
    c.send(conn)
    src = _backend_got(backend, conn, 'own CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK for the own ClientId')
    before = gw.stats()

    c.send(sn.connect('meter-0002'))
    _expect_raw(c, sn.connack(sn.RC_NOT_SUPPORTED), 'CONNACK for another ClientId')
    gw.wait_stat('dropped_policy', 1)
    _backend_quiet(backend, 'after the refused CONNECT')
    after = gw.stats()
    eq({k: after[k] - before[k] for k in ('plain_in', 'plain_out', 'records_out', 'replies_local',
                                          'dropped_policy', 'dropped_unknown')},
       dict(plain_in=1, plain_out=1, records_out=0, replies_local=1, dropped_policy=1,
            dropped_unknown=0), 'gateway counters for the refused CONNECT')
    eq(term.stats()['dropped_policy'], 0, 'terminator dropped_policy')
    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway sessions')


def test_pinned_identity_belongs_to_its_source(env):
    """meter-0001 is pinned (meters entry) to the real meter's source. Another
    LAN source (127.0.0.2) that sends CONNECT meter-0001 gets CONNACK 0x03
    from the gateway and nothing else: it does not enter meter-0001's
    session, replies still go to the real meter, `sessions` keeps the real
    meter's address; a PINGREQ naming meter-0001 from there is dropped. Each
    refusal is one dropped_policy."""
    pdir = _setup(env)
    meter = sn.Client((h.LO, 0))
    env.defer(meter.close)
    attacker = sn.Client(bind=('127.0.0.2', 0))
    env.defer(attacker.close)
    msource = '%s:%d' % meter.address
    backend, term, gw = _chain(env, pdir, meters=[('meter-0001', msource)])
    meter.server = attacker.server = (h.LO, gw.port)
    conn = sn.connect('meter-0001', duration=60)
    meter.send(conn)
    src = _backend_got(backend, conn, "the real meter's CONNECT at the backend")
    backend.reply(sn.connack(0), src)
    _expect_raw(meter, sn.connack(0), 'CONNACK at the real meter')
    before = gw.stats()

    attacker.send(conn)
    _backend_quiet(backend, "after the other source's CONNECT")
    _expect_raw(attacker, sn.connack(sn.RC_NOT_SUPPORTED), 'CONNACK to the other source')
    attacker.send(sn.pingreq('meter-0001'))
    gw.wait_stat('dropped_policy', 2)
    _backend_quiet(backend, "after the other source's PINGREQ")
    # the cloud's next datagram for meter-0001 goes to the real meter only
    pub = sn.publish(5, b'reading', msg_id=7, qos=1)
    backend.reply(pub, src)
    _expect_raw(meter, pub, 'PUBLISH from the cloud at the real meter')
    _client_quiet(attacker, 'the other source after the refusals')
    after = gw.stats()
    eq({k: after[k] - before[k] for k in ('plain_in', 'plain_out', 'records_out', 'replies_local',
                                          'dropped_policy', 'dropped_unknown', 'sessions')},
       dict(plain_in=2, plain_out=2, records_out=0, replies_local=1, dropped_policy=2,
            dropped_unknown=0, sessions=0), 'gateway counters for the other source')
    eq([(s['identity'], s['state'], s['peer']) for s in gw.sessions()],
       [('meter-0001', 'established', msource)], 'gateway sessions (identity, state, peer)')
    eq(term.stats()['plain_out'], 1, 'datagrams at the backend (the real CONNECT only)')


def test_reload_that_pins_an_identity_forgets_other_sources(env):
    """Another source (127.0.0.2) was learned for meter-0001 from its CONNECT;
    a reload pins meter-0001 to the real meter's source: that source speaks
    for meter-0001 no more (its PUBLISH is dropped_unknown), the real meter
    does."""
    pdir = _setup(env)
    meter = sn.Client((h.LO, 0))
    env.defer(meter.close)
    other = sn.Client(bind=('127.0.0.2', 0))
    env.defer(other.close)
    backend, term, gw = _chain(env, pdir)
    meter.server = other.server = (h.LO, gw.port)
    conn = sn.connect('meter-0001', duration=60)
    other.send(conn)
    src = _backend_got(backend, conn, "the other source's CONNECT (no pin yet)")
    gw.meters = [('meter-0001', '%s:%d' % meter.address)]
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'reload outcome')
    before = gw.stats()
    pub = sn.publish(5, b'forged', msg_id=1, qos=1)
    other.send(pub)
    _backend_quiet(backend, "after the other source's PUBLISH")
    gw.wait_stat('dropped_unknown', before['dropped_unknown'] + 1)
    own = sn.publish(5, b'21.5', msg_id=2, qos=1)
    meter.send(own)
    eq(_backend_got(backend, own, "the real meter's PUBLISH"), src, 'backend socket (same session)')
    after = gw.stats()
    eq({k: after[k] - before[k] for k in ('plain_in', 'dropped_unknown', 'dropped_policy')},
       dict(plain_in=2, dropped_unknown=1, dropped_policy=0), 'gateway counters after the reload')


def test_terminator_refuses_connect_with_another_client_id(env):
    """An opaque gateway carries meter-0001's datagrams in meter-0001's
    session; a CONNECT meter-0002 in it is answered with CONNACK 0x03 by the
    terminator and never reaches the backend."""
    pdir = _setup(env)
    c = sn.Client((h.LO, 0))
    env.defer(c.close)
    backend, term, gw = _chain(env, pdir, meters=[('meter-0001', '%s:%d' % c.address)],
                               gw_plugin=None)
    c.server = (h.LO, gw.port)
    c.send(sn.connect('meter-0002'))
    _expect_raw(c, sn.connack(sn.RC_NOT_SUPPORTED), 'CONNACK from the terminator')
    term.wait_stat('dropped_policy', 1)
    _backend_quiet(backend, 'after the refused CONNECT')
    st = term.stats()
    eq((st['dropped_policy'], st['replies_local'], st['plain_out'], st['plain_in']), (1, 1, 0, 0),
       'terminator dropped_policy, replies_local, plain_out, plain_in')
    eq(gw.stats()['dropped_policy'], 0, 'gateway dropped_policy')

    conn = sn.connect('meter-0001')
    c.send(conn)
    src = _backend_got(backend, conn, 'own CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK from the backend')
    eq(term.stats()['dropped_policy'], 1, 'terminator dropped_policy at the end')


def test_searchgw_answered_on_the_lan(env):
    pdir = _setup(env)
    bound = sn.Client((h.LO, 0))
    env.defer(bound.close)
    cloud = env.udp()
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % cloud.getsockname(),
                 options=dict(gateway_id=7), meters=[('meter-0001', '%s:%d' % bound.address)])
    stranger = _client(env, gw)
    bound.server = (h.LO, gw.port)
    stranger.send(sn.searchgw(0))
    eq(_expect_raw(stranger, sn.gwinfo(7), 'GWINFO to an unknown source'), (h.LO, gw.port),
       'GWINFO source')
    bound.send(sn.searchgw(1))
    _expect_raw(bound, sn.gwinfo(7), 'GWINFO to a bound meter')
    cloud.settimeout(ABSENCE_S)
    try:
        got = cloud.recvfrom(65535)
        raise Fail('the cloud side got %r' % (got,))
    except OSError:
        pass
    eq(_pick(gw.stats()), dict(sessions=0, handshakes_started=0, handshakes_completed=0,
                               plain_in=2, plain_out=2, records_out=0, replies_local=2,
                               dropped_unknown=0, dropped_malformed=0, dropped_policy=0,
                               dropped_overflow=0), 'gateway stats')


def test_forwarder_encapsulation_toward_the_backend(env):
    """forwarder = "127.0.0.1:FPORT": the backend sees one forwarder with each
    session's PSK identity as its Wireless Node Id; replies unwrap by node id."""
    pdir = _setup(env)
    fport = h.free_udp_port()
    backend, term, gw = _chain(env, pdir, term_options=dict(forwarder='%s:%d' % (h.LO, fport)))
    c = _client(env, gw)
    conn = sn.connect('meter-0001', duration=30)
    c.send(conn)
    src = _backend_got(backend, sn.encapsulate('meter-0001', conn), 'encapsulated CONNECT')
    eq(src, (h.LO, fport), 'where the forwarder speaks from')
    backend.reply(sn.encapsulate('meter-0001', sn.connack(0)), src)
    _expect_raw(c, sn.connack(0), 'unwrapped CONNACK at the client')

    # a reply for a node with no session goes nowhere
    backend.reply(sn.encapsulate('meter-0002', sn.connack(0)), src)
    term.wait_stat('dropped_unknown', 1)
    # nor does a reply that is not encapsulated
    backend.reply(sn.connack(0), src)
    term.wait_stat('dropped_unknown', 2)
    _client_quiet(c, 'after replies for nobody')

    reg = sn.register('meter/0001/energy', msg_id=3)
    c.send(reg)
    _backend_got(backend, sn.encapsulate('meter-0001', reg), 'encapsulated REGISTER')
    backend.reply(sn.encapsulate('meter-0001', sn.regack(9, 3)), src)
    _expect_raw(c, sn.regack(9, 3), 'unwrapped REGACK at the client')
    st = term.stats()
    eq((st['plain_out'], st['plain_in'], st['dropped_unknown'], st['dropped_policy']), (2, 4, 2, 0),
       'terminator plain_out, plain_in, dropped_unknown, dropped_policy')


def test_forwarder_socket_answers_only_the_backend(env):
    """The forwarder socket takes replies from the configured backend address
    only: an encapsulated CONNACK for meter-0001 from another port of the
    backend's host, and from the backend's port on another loopback address,
    is dropped (dropped_policy) and never reaches the meter; the backend's
    own reply still does."""
    pdir = _setup(env)
    fport = h.free_udp_port()
    backend, term, gw = _chain(env, pdir, term_options=dict(forwarder='%s:%d' % (h.LO, fport)))
    c = _client(env, gw)
    conn = sn.connect('meter-0001', duration=30)
    c.send(conn)
    src = _backend_got(backend, sn.encapsulate('meter-0001', conn), 'encapsulated CONNECT')
    forged = sn.encapsulate('meter-0001', sn.connack(0))
    other_port = sn.Client(bind=(h.LO, 0))
    env.defer(other_port.close)
    other_host = sn.Client(bind=('127.0.0.2', backend.address[1]))
    env.defer(other_host.close)
    before = term.stats()
    other_port.send(forged, src)
    other_host.send(forged, src)
    _client_quiet(c, 'after replies from elsewhere than the backend')
    term.wait_stat('dropped_policy', 2)
    after = term.stats()
    eq({k: after[k] - before[k] for k in ('plain_in', 'plain_out', 'records_out', 'dropped_policy',
                                          'dropped_unknown')},
       dict(plain_in=2, plain_out=0, records_out=0, dropped_policy=2, dropped_unknown=0),
       'terminator counters for the two forged replies')
    backend.reply(sn.encapsulate('meter-0001', sn.connack(0)), src)
    _expect_raw(c, sn.connack(0), "the backend's CONNACK at the client")
    eq(term.stats()['dropped_policy'], 2, 'terminator dropped_policy at the end')


def _idle_seen(gw, identity, seen):
    """Poll: the session's idle time as the gateway's own clock has it
    (last_activity_s, whole seconds) goes into `seen` while it is
    established; true once the session is gone."""
    s = gw.session(identity)
    if s is None:
        return True
    if s['state'] == 'established':
        seen.append(s['last_activity_s'])
    return False


def test_keep_alive_raises_the_idle_timeout(env):
    """dtls.idle_timeout_s = 1, CONNECT keep-alive 4 s: the session lives
    1.5 x 4 = 6 s from its last activity, then closes by itself.  Read on the
    gateway's clock (the sessions' last_activity_s), not the test's: the
    session is seen established when idle for 1 s or more (idle_timeout_s
    alone would have closed it), never when idle for 6 s or more."""
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir, gw_dtls={'retransmit_ms': 500, 'idle_timeout_s': 1})
    c = _client(env, gw)
    conn = sn.connect('meter-0001', duration=4)
    c.send(conn)
    src = _backend_got(backend, conn, 'CONNECT at the backend')
    mark = gw.log_mark()
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK')
    seen = []
    h.await_condition(lambda: _idle_seen(gw, 'meter-0001', seen), 'the session closed by itself')
    gw.wait_log(r'session meter-0001 down \(idle', start=mark)
    h.log('established at idle times (s) %s' % sorted(set(seen)))
    if not seen or not 1 <= max(seen) <= 5:
        raise Fail('session seen established at idle times %s (s): want some from 1 s '
                   '(past idle_timeout_s) and none from 6 s (1.5 x keep-alive)' % sorted(set(seen)))


def test_disconnect_closes_the_session_after_forwarding(env):
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir)
    c = _client(env, gw)
    conn = sn.connect('meter-0001')
    c.send(conn)
    src = _backend_got(backend, conn, 'CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK')
    eq(gw.stats()['sessions'], 1, 'gateway sessions before DISCONNECT')

    c.send(sn.disconnect())
    _expect_raw(c, sn.disconnect(), 'DISCONNECT acknowledged on the LAN')
    _backend_got(backend, sn.disconnect(), 'DISCONNECT at the backend')
    gw.wait_stat('sessions', 0)
    term.wait_stat('sessions', 0)
    st = gw.stats()
    eq((st['sessions_closed'], st['handshakes_completed'], st['dropped_closed']), (1, 1, 0),
       'gateway sessions_closed, handshakes_completed, dropped_closed')


def test_sleeping_disconnect_keeps_the_session(env):
    """DISCONNECT with a duration (a sleeping client) is forwarded and the
    session stays, beyond dtls.idle_timeout_s."""
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir, gw_dtls={'retransmit_ms': 500, 'idle_timeout_s': 1})
    c = _client(env, gw)
    conn = sn.connect('meter-0001', duration=0)     # no keep-alive: idle stays 1 s
    c.send(conn)
    src = _backend_got(backend, conn, 'CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK')
    c.send(sn.disconnect(60))
    _backend_got(backend, sn.disconnect(60), 'sleeping DISCONNECT at the backend')
    backend.reply(sn.disconnect(), src)
    _expect_raw(c, sn.disconnect(), "the backend's DISCONNECT")
    t0 = time.monotonic()
    # idle_timeout_s is 1; 1.5 x 60 = 90 s now: seen established at an idle
    # time of 1 s or more on the gateway's own clock, it outlived idle_timeout_s
    h.await_condition(lambda: (gw.session('meter-0001') or {}).get('last_activity_s', 0) >= 1,
                      'the session idle for 1 s')
    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway sessions past idle_timeout_s into the sleep')
    # the client wakes up within its sleep and is served on the same session
    c.send(sn.pingreq('meter-0001'))
    _backend_got(backend, sn.pingreq('meter-0001'), 'PINGREQ at the backend')
    backend.reply(sn.pingresp(), src)
    _expect_raw(c, sn.pingresp(), 'PINGRESP')
    eq(gw.stats()['handshakes_completed'], 1, 'gateway handshakes_completed')
    h.log('woke %.2f s into the sleep' % (time.monotonic() - t0))


def test_advertise_sent_to_the_lan(env):
    pdir = _setup(env)
    lan = env.udp()
    cloud = env.udp()
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % cloud.getsockname(),
                 options=dict(gateway_id=7, advertise_s=1,
                              advertise_to='%s:%d' % lan.getsockname()))
    lan.settimeout(h.T)
    got = []
    for _ in range(2):
        data, src = lan.recvfrom(65535)
        got.append((data, src, time.monotonic()))
        h.log('lan: got %r from %r' % (data, src))
    for data, src, _ in got:
        eq(data, sn.advertise(7, 1), 'ADVERTISE bytes')
        eq(src, (h.LO, gw.port), 'ADVERTISE source (the tunnel accept address)')
    gap = got[1][2] - got[0][2]
    if not 0.5 <= gap <= 2.0:
        raise Fail('ADVERTISE every %.2f s, want 1' % gap)
    st = gw.stats()
    eq((st['records_out'], st['handshakes_started'], st['sessions']), (0, 0, 0),
       'gateway records_out, handshakes_started, sessions')


def test_unanswered_connect_reported_silent(env):
    """answer_timeout_ms = 1000 and a backend that never answers: the gateway
    reports the session silent and shakes hands again."""
    pdir = _setup(env)
    backend, term, gw = _chain(env, pdir, gw_options=dict(answer_timeout_ms=1000))
    c = _client(env, gw)
    conn = sn.connect('meter-0001')
    c.send(conn)
    _backend_got(backend, conn, 'CONNECT at the backend')      # and no answer
    h.wait_until(lambda: gw.stats()['rehandshakes'] >= 1, h.T, 'gateway rehandshakes >= 1')
    gw.wait_stat('handshakes_completed', 2)
    st = gw.stats()
    eq((st['silent_reports'], st['rehandshakes'], st['sessions']), (1, 1, 1),
       'gateway silent_reports, rehandshakes, sessions')
    # the new session carries the retried CONNECT, and this time it is answered
    c.send(conn)
    src = _backend_got(backend, conn, 'retried CONNECT at the backend')
    backend.reply(sn.connack(0), src)
    _expect_raw(c, sn.connack(0), 'CONNACK on the new session')
    eq(gw.stats()['silent_reports'], 1, 'gateway silent_reports at the end')


if __name__ == '__main__':
    h.main(globals())

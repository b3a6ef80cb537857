#!/usr/bin/env python3
"""The CoAP plugin (plugin = "coap") on loopback, against libcoap 4.3.1:
coap-client-notls -> gateway -> terminator -> coap-server-notls with the
meter's identity learned from ?ep=, the gateway against coap-server-gnutls
and -openssl (one key per identity), refusals of a request naming another
identity at both ends (4.03 for a CON, nothing for a NON, dropped_policy),
unknown identities and malformed datagrams (dropped and counted, no
handshake), and a silent cloud (answer_timeout_ms: silent_reports,
rehandshakes, then served again).
Exit 0: all passed, 1: a test failed, 77: psktund, a plugin or a peer missing."""

import os
import re
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402

# libcoap takes keys as ASCII; psktun's key file gets their hex (h.write_keys).
KEYS = {'meter-0001': 'plugin-coap-key-0001-abc', 'meter-0002': 'plugin-coap-key-0002-def'}
CONTENT = h.coap_code(2, 5)
FORBIDDEN = h.coap_code(4, 3)
TIME_RX = re.compile(rb'^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d$')
IDENTITY = {'identity': 'query:ep'}
# How long to listen for a datagram that must not come (never for something awaited).
ABSENCE_S = 0.5
COUNTERS = ('sessions', 'handshakes_started', 'handshakes_completed', 'plain_in', 'plain_out',
            'records_out', 'replies_local', 'dropped_unknown', 'dropped_malformed',
            'dropped_policy', 'dropped_overflow')


def _pick(st, names=COUNTERS):
    return {k: st[k] for k in names}


def _need_plugin(pdir):
    if not os.path.exists(os.path.join(pdir, 'coap.so')):
        raise h.Skip('coap.so not built under PLUGIN_BUILD_DIR')


def _daemon(env, pdir, name, mode, connect, options=IDENTITY, keys=KEYS, meters=(), dtls=None,
            plugin='coap', verbose=1):
    """psktund with one tunnel `t1` (plugin `plugin` with `options`) on a fresh port."""
    port = h.free_udp_port()
    tunnel = dict(name='t1', accept='%s:%d' % (h.LO, port), connect=connect)
    if plugin:
        tunnel.update(plugin=plugin, options=options)
    d = env.daemon(name, mode, [tunnel], keys, meters=meters, dtls=dtls, plugin_dir=pdir,
                   verbose=verbose)
    d.port = port
    d.addr = '%s:%d' % (h.LO, port)
    return d


def _setup(env):
    h.psktund()
    h.psktunctl()
    pdir = h.plugin_dir(env)
    _need_plugin(pdir)
    return pdir


def _get(mid, token, path, ep=None, mtype=h.COAP_CON):
    opts = [(h.OPT_URI_PATH, seg.encode()) for seg in path.strip('/').split('/') if seg]
    if ep is not None:
        opts.append((h.OPT_URI_QUERY, b'ep=' + ep.encode()))
    return h.coap_encode(mtype, h.COAP_GET, mid, token, opts)


def _query(msg):
    return [v for n, v in h.coap_decode(msg)['options'] if n == h.OPT_URI_QUERY]


class CoapBackend:
    """A plain CoAP server on a thread that records every datagram and
    answers a CON request with a piggybacked 2.05 'backend:PATH'."""

    def __init__(self, env):
        self.sock = env.udp()
        self.port = self.sock.getsockname()[1]
        self.addr = '%s:%d' % (h.LO, self.port)
        self.got = []
        self.lock = threading.Lock()
        self._stop = False
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        env.defer(self.stop)

    def _run(self):
        while not self._stop:
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            h.log('coap backend: got %d bytes from %s:%d: %r' % (len(data), src[0], src[1], data))
            with self.lock:
                self.got.append(data)
            try:
                m = h.coap_decode(data)
            except ValueError:
                continue
            if m['type'] == h.COAP_CON and 1 <= m['code'] <= 31:
                path = b'/'.join(v for n, v in m['options'] if n == h.OPT_URI_PATH)
                self.sock.sendto(h.coap_encode(h.COAP_ACK, CONTENT, m['mid'], m['token'],
                                               payload=b'backend:' + path), src)

    def received(self):
        with self.lock:
            return list(self.got)

    def stop(self):
        self._stop = True
        self.thread.join(2)


def test_coap_client_through_gateway_and_terminator_identity_learned(env):
    """coap-client-notls -> gateway (no meters entry; ep= names the meter)
    -> terminator -> coap-server-notls, and the answer comes back."""
    pdir = _setup(env)
    port = h.free_port_pair()
    h.libcoap_server(env, 'notls', port, None)
    rc, direct, _ = h.coap_client(env, 'notls', 'coap://%s:%d/' % (h.LO, port), name='direct')
    eq(rc, 0, 'direct coap-client-notls exit code')
    if not direct.startswith('This is a test server'):
        raise Fail('unexpected / payload %r' % direct)

    term = _daemon(env, pdir, 'terminator', 'terminator', '%s:%d' % (h.LO, port))
    gw = _daemon(env, pdir, 'gateway', 'gateway', term.addr)

    rc, via, _ = h.coap_client(env, 'notls', 'coap://%s/?ep=meter-0001' % gw.addr, name='via-index')
    eq(rc, 0, 'coap-client-notls GET /?ep=meter-0001 via gateway+terminator exit code')
    eq(via, direct, 'GET / through gateway and terminator')
    rc, tm, _ = h.coap_client(env, 'notls', 'coap://%s/time?ep=meter-0001' % gw.addr, name='via-time')
    eq(rc, 0, 'coap-client-notls GET /time?ep=meter-0001 exit code')
    if not TIME_RX.match(tm.rstrip('\n').encode()):
        raise Fail('GET /time payload %r' % tm)

    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway sessions (identity learned from ep=)')
    eq([(s['identity'], s['state']) for s in term.sessions()], [('meter-0001', 'established')],
       'terminator sessions')
    # two coap-client runs: two source ports, one session and one handshake
    st = gw.stats()
    eq(_pick(st, ('sessions', 'handshakes_completed', 'plain_in', 'plain_out', 'dropped_unknown',
                  'dropped_malformed', 'dropped_policy')),
       dict(sessions=1, handshakes_completed=1, plain_in=2, plain_out=2, dropped_unknown=0,
            dropped_malformed=0, dropped_policy=0), 'gateway stats')
    st = term.stats()
    eq(_pick(st, ('sessions', 'handshakes_completed', 'plain_in', 'plain_out', 'dropped_policy',
                  'dropped_malformed')),
       dict(sessions=1, handshakes_completed=1, plain_in=2, plain_out=2, dropped_policy=0,
            dropped_malformed=0), 'terminator stats')


def _gateway_vs_coap_server(env, flavour):
    pdir = _setup(env)
    port = h.free_port_pair()
    h.libcoap_server(env, flavour, port, h.write_coap_idfile(env.path('ids'), KEYS))
    want = h.coap_decode(h.coap_direct(port, h.coap_get(0x0101, b'dir', '/')))
    eq(want['code'], CONTENT, 'direct GET / code')
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % (h.LO, port + 1))
    m1, m2 = env.meter(name='m1'), env.meter(name='m2')

    r1 = h.coap_decode(m1.request(_get(0x1001, b'\x01\x02', '/', 'meter-0001'), gw.addr))
    eq((r1['type'], r1['code'], r1['mid'], r1['token'], r1['payload']),
       (h.COAP_ACK, CONTENT, 0x1001, b'\x01\x02', want['payload']), 'meter-0001 GET / reply')
    r2 = h.coap_decode(m2.request(_get(0x2001, b'\xaa', 'time', 'meter-0002'), gw.addr))
    eq((r2['type'], r2['code'], r2['mid'], r2['token']), (h.COAP_ACK, CONTENT, 0x2001, b'\xaa'),
       'meter-0002 GET /time reply header')
    if not TIME_RX.match(r2['payload']):
        raise Fail('GET /time payload %r' % r2['payload'])
    # bound now: the next request may leave ep= out
    r3 = h.coap_decode(m1.request(_get(0x1002, b'\x03', 'time'), gw.addr))
    eq((r3['type'], r3['code'], r3['mid'], r3['token']), (h.COAP_ACK, CONTENT, 0x1002, b'\x03'),
       'meter-0001 second request without ep=')

    eq(sorted((s['identity'], s['state']) for s in gw.sessions()),
       [('meter-0001', 'established'), ('meter-0002', 'established')], 'gateway sessions')
    names = [k for k in COUNTERS if k != 'records_out']
    eq(_pick(gw.stats(), names),
       dict(sessions=2, handshakes_started=2, handshakes_completed=2, plain_in=3, plain_out=3,
            replies_local=0, dropped_unknown=0, dropped_malformed=0, dropped_policy=0,
            dropped_overflow=0), 'gateway stats')


def test_gateway_coap_plugin_to_coap_server_gnutls_one_key_per_identity(env):
    _gateway_vs_coap_server(env, 'gnutls')


def test_gateway_coap_plugin_to_coap_server_openssl_one_key_per_identity(env):
    _gateway_vs_coap_server(env, 'openssl')


def test_gateway_drops_unknown_ep_without_handshake(env):
    pdir = _setup(env)
    cloud = env.udp()       # stands in for the DTLS server: must hear nothing
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % cloud.getsockname())
    m = env.meter()
    m.send(_get(0x3001, b'u', 'time', 'meter-9999'), gw.addr)     # not in the key file
    gw.wait_stat('dropped_unknown', 1)
    m.send(_get(0x3002, b'v', 'time'), gw.addr)                   # no ep= at all
    gw.wait_stat('dropped_unknown', 2)
    m.send(h.coap_encode(h.COAP_CON, 0, 0x3003), gw.addr)         # a ping names nobody
    gw.wait_stat('dropped_unknown', 3)
    cloud.settimeout(ABSENCE_S)
    try:
        got = cloud.recvfrom(65535)
        raise Fail('the cloud side got %r' % (got,))
    except socket.timeout:
        pass
    eq(m.pending(), [], 'answers to the meter')
    eq(_pick(gw.stats()), dict(sessions=0, handshakes_started=0, handshakes_completed=0,
                               plain_in=3, plain_out=0, records_out=0, replies_local=0,
                               dropped_unknown=3, dropped_malformed=0, dropped_policy=0,
                               dropped_overflow=0), 'gateway stats')
    eq(gw.sessions(), [], 'gateway sessions')


def test_terminator_refuses_request_naming_another_identity(env):
    """A DTLS client authenticated as meter-0001 asks with ?ep=meter-0002:
    a CON gets 4.03 from the terminator, a NON is dropped; the backend sees
    neither, and still gets meter-0001's own request."""
    pdir = _setup(env)
    h.need('coap-client-gnutls')
    backend = CoapBackend(env)
    term = _daemon(env, pdir, 'terminator', 'terminator', backend.addr)
    uri = 'coaps://%s/x?ep=%%s' % term.addr

    rc, out, logtext = h.coap_client(env, 'gnutls', uri % 'meter-0002', 'meter-0001',
                                     KEYS['meter-0001'], timeout_s=30, name='con-other')
    if '4.03' not in out + logtext:
        raise Fail('coap-client (CON, ep=meter-0002) did not report 4.03: rc %r, out %r, log %r'
                   % (rc, out, logtext))
    term.wait_stat('dropped_policy', 1)
    eq(backend.received(), [], 'backend after the refused CON')
    st = term.stats()
    eq((st['dropped_policy'], st['replies_local'], st['plain_out'], st['handshakes_completed']),
       (1, 1, 0, 1), 'terminator dropped_policy, replies_local, plain_out, handshakes_completed')

    rc, out, logtext = h.coap_client(env, 'gnutls', uri % 'meter-0002', 'meter-0001',
                                     # no answer comes: it waits all of -B, which must
                                     # cover its handshake on a slow machine too
                                     KEYS['meter-0001'], timeout_s=5, extra=['-N'],
                                     name='non-other')
    term.wait_stat('dropped_policy', 2)
    if '4.03' in out + logtext or 'backend' in out:
        raise Fail('a refused NON was answered: out %r, log %r' % (out, logtext))
    eq(backend.received(), [], 'backend after the refused NON')
    st = term.stats()
    eq((st['dropped_policy'], st['replies_local'], st['plain_out']), (2, 1, 0),
       'terminator dropped_policy, replies_local, plain_out after the NON')

    rc, out, _ = h.coap_client(env, 'gnutls', uri % 'meter-0001', 'meter-0001',
                               KEYS['meter-0001'], timeout_s=30, name='con-own')
    eq((rc, out), (0, 'backend:x\n'), 'CON with its own ep= (exit code, payload)')
    got = backend.received()
    eq(len(got), 1, 'datagrams at the backend')
    eq((h.coap_decode(got[0])['type'], _query(got[0])), (h.COAP_CON, [b'ep=meter-0001']),
       'what reached the backend (type, Uri-Query)')
    eq(term.stats()['dropped_policy'], 2, 'terminator dropped_policy at the end')


def test_terminator_refuses_an_identity_a_backend_could_read_twice(env):
    """coap-client-gnutls authenticated as meter-0001, with its own ep= and a
    second identity a lenient backend could read: '&' inside one Uri-Query
    (%26), the name in capitals, a Proxy-Uri. Each gets 4.03 from the
    terminator (dropped_policy) and nothing reaches the backend."""
    pdir = _setup(env)
    h.need('coap-client-gnutls')
    backend = CoapBackend(env)
    term = _daemon(env, pdir, 'terminator', 'terminator', backend.addr)
    base = 'coaps://%s' % term.addr
    shapes = [
        ('amp', base + '/rd?ep=meter-0001&lt=300%26ep=meter-0002', []),
        ('caps', base + '/rd?ep=meter-0001&EP=meter-0002', []),
        ('proxy', base + '/rd?ep=meter-0001', ['-O', '35,coap://cloud/rd?ep=meter-0002']),
    ]
    for n, (name, uri, extra) in enumerate(shapes, 1):
        rc, out, logtext = h.coap_client(env, 'gnutls', uri, 'meter-0001', KEYS['meter-0001'],
                                         timeout_s=5, extra=extra, name=name)
        if '4.03' not in out + logtext:
            raise Fail('%s: coap-client did not report 4.03: rc %r, out %r, log %r'
                       % (name, rc, out, logtext))
        term.wait_stat('dropped_policy', n)
    eq(backend.received(), [], 'backend after the refused requests')
    st = term.stats()
    eq((st['dropped_policy'], st['replies_local'], st['plain_out']), (3, 3, 0),
       'terminator dropped_policy, replies_local, plain_out')


def test_gateway_refuses_bound_meter_naming_another_identity(env):
    """A source bound to meter-0001 by a meters entry registers as
    ep=meter-0002: 4.03 on the LAN, nothing goes out, no handshake."""
    pdir = _setup(env)
    cloud = env.udp()
    m = env.meter(name='meter-0001')
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % cloud.getsockname(),
                 meters=[('meter-0001', m.source)])
    req = h.coap_encode(h.COAP_CON, h.COAP_POST, 0x4001, b'\x11\x22\x33',
                        [(h.OPT_URI_PATH, b'rd'), (h.OPT_URI_QUERY, b'ep=meter-0002')], b'</3/0>')
    r = m.request(req, gw.addr)
    eq(r, h.coap_encode(h.COAP_ACK, FORBIDDEN, 0x4001, b'\x11\x22\x33'), '4.03 bytes')
    eq(gw.stats()['dropped_policy'], 1, 'dropped_policy after the CON')
    m.send(_get(0x4002, b'\x44', 'rd', 'meter-0002', mtype=h.COAP_NON), gw.addr)
    gw.wait_stat('dropped_policy', 2)
    cloud.settimeout(ABSENCE_S)
    try:
        got = cloud.recvfrom(65535)
        raise Fail('the cloud side got %r' % (got,))
    except socket.timeout:
        pass
    eq(m.pending(), [], 'answers to the NON')
    # plain_out: the 4.03 went back to the meter on the plain side
    eq(_pick(gw.stats()), dict(sessions=0, handshakes_started=0, handshakes_completed=0,
                               plain_in=2, plain_out=1, records_out=0, replies_local=1,
                               dropped_unknown=0, dropped_malformed=0, dropped_policy=2,
                               dropped_overflow=0), 'gateway stats')


def _meter_at(env, ip, name):
    """A meter whose socket is bound to another loopback address."""
    m = env.meter(name=name)
    m.sock.close()
    m.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    m.sock.bind((ip, 0))
    m.port = m.sock.getsockname()[1]
    m.source = '%s:%d' % (ip, m.port)
    return m


def test_pinned_identity_belongs_to_its_source(env):
    """meter-0001 is pinned (meters entry) to the real meter's source; another
    LAN source (127.0.0.2) registering as ep=meter-0001 gets 4.03 from the
    gateway (a NON: nothing), never reaches the backend nor the session, and
    `sessions` keeps the real meter's address; one dropped_policy each."""
    pdir = _setup(env)
    backend = CoapBackend(env)
    meter = env.meter(name='meter-0001')
    attacker = _meter_at(env, '127.0.0.2', 'attacker')
    term = _daemon(env, pdir, 'terminator', 'terminator', backend.addr)
    gw = _daemon(env, pdir, 'gateway', 'gateway', term.addr, meters=[('meter-0001', meter.source)])
    r = h.coap_decode(meter.request(_get(0x6001, b'm', 'x', 'meter-0001'), gw.addr))
    eq((r['type'], r['code'], r['mid'], r['payload']), (h.COAP_ACK, CONTENT, 0x6001, b'backend:x'),
       "the real meter's request answered")
    before = gw.stats()

    req = h.coap_encode(h.COAP_CON, h.COAP_POST, 0x6002, b'\x66',
                        [(h.OPT_URI_PATH, b'rd'), (h.OPT_URI_QUERY, b'ep=meter-0001')], b'</3/0>')
    eq(attacker.request(req, gw.addr), h.coap_encode(h.COAP_ACK, FORBIDDEN, 0x6002, b'\x66'),
       'the answer to the other source (4.03 bytes)')
    attacker.send(_get(0x6003, b'\x67', 'x', 'meter-0001', mtype=h.COAP_NON), gw.addr)
    gw.wait_stat('dropped_policy', 2)
    r = h.coap_decode(meter.request(_get(0x6004, b'n', 'y'), gw.addr))
    eq((r['type'], r['code'], r['mid'], r['payload']), (h.COAP_ACK, CONTENT, 0x6004, b'backend:y'),
       "the real meter's next request answered")
    eq((attacker.pending(), meter.pending()), ([], []), 'anything else at either source')
    eq(len(backend.received()), 2, "datagrams at the backend (the real meter's two)")
    after = gw.stats()
    eq({k: after[k] - before[k] for k in ('plain_in', 'plain_out', 'replies_local', 'dropped_policy',
                                          'dropped_unknown', 'sessions', 'handshakes_started')},
       dict(plain_in=3, plain_out=2, replies_local=1, dropped_policy=2, dropped_unknown=0,
            sessions=0, handshakes_started=0), 'gateway counters since the real first request')
    eq([(s['identity'], s['state'], s['peer']) for s in gw.sessions()],
       [('meter-0001', 'established', meter.source)], 'gateway sessions (identity, state, peer)')


def test_silent_cloud_reported_and_rehandshaked_then_served_again(env):
    """gateway -> BadLink -> terminator -> coap-server-notls; the link goes
    down after the handshake: an unanswered CON is reported silent after
    answer_timeout_ms and the gateway shakes hands again; once the link is
    back, the next request is answered."""
    pdir = _setup(env)
    port = h.free_port_pair()
    h.libcoap_server(env, 'notls', port, None)
    term = _daemon(env, pdir, 'terminator', 'terminator', '%s:%d' % (h.LO, port))
    bl = BadLink(upstream=(h.LO, term.port))
    env.defer(bl.stop)
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % bl.listen_addr,
                 options=dict(IDENTITY, answer_timeout_ms=1000))
    m = env.meter()
    r = h.coap_decode(m.request(_get(0x5001, b'a', 'time', 'meter-0001'), gw.addr))
    eq((r['type'], r['code'], r['mid']), (h.COAP_ACK, CONTENT, 0x5001), 'first reply')
    eq((gw.stats()['silent_reports'], gw.stats()['rehandshakes']), (0, 0),
       'silent_reports, rehandshakes while answered')

    bl.set_down(True)
    m.send(_get(0x5002, b'b', 'time', 'meter-0001'), gw.addr)
    h.wait_until(lambda: gw.stats()['rehandshakes'] >= 1, h.T, 'gateway rehandshakes >= 1')
    st = gw.stats()
    eq((st['silent_reports'], st['rehandshakes']), (1, 1), 'silent_reports, rehandshakes')
    eq(m.pending(), [], 'answers while the link is down')

    bl.set_down(False)
    # the gateway's own DTLS retransmission of the lost flight gets through
    gw.wait_stat('handshakes_completed', 2)
    r = h.coap_decode(m.request(_get(0x5003, b'c', 'time', 'meter-0001'), gw.addr))
    eq((r['type'], r['code'], r['mid'], r['token']), (h.COAP_ACK, CONTENT, 0x5003, b'c'),
       'reply once the link is back')
    if not TIME_RX.match(r['payload']):
        raise Fail('GET /time payload %r' % r['payload'])
    st = gw.stats()
    eq((st['sessions'], st['handshakes_completed'], st['silent_reports'], st['rehandshakes']),
       (1, 2, 1, 1), 'gateway sessions, handshakes_completed, silent_reports, rehandshakes')
    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway sessions after the new handshake')


def test_malformed_coap_from_meters_dropped(env):
    """Garbage from a bound meter (on_plain) and from an unbound source
    (identify): dropped_malformed, nothing answered, no handshake."""
    pdir = _setup(env)
    cloud = env.udp()
    bound = env.meter(name='bound')
    stranger = env.meter(name='stranger')
    gw = _daemon(env, pdir, 'gateway', 'gateway', '%s:%d' % cloud.getsockname(),
                 meters=[('meter-0001', bound.source)])
    bad = [
        b'\x80\x01\x00\x01',                  # version 2
        b'\x40\x01',                          # shorter than the header
        b'\x49\x01\x00\x01' + b't' * 9,       # token length 9 (reserved)
        b'\x41\x01\x00\x01',                  # token length 1, no token
        b'\x40\x01\x00\x01\xf0',              # option delta 15 (reserved)
        b'\x40\x01\x00\x01\xff',              # payload marker, no payload
    ]
    n = 0
    for who in (bound, stranger):
        for b in bad:
            who.send(b, gw.addr)
            n += 1
            gw.wait_stat('dropped_malformed', n)
    cloud.settimeout(ABSENCE_S)
    try:
        got = cloud.recvfrom(65535)
        raise Fail('the cloud side got %r' % (got,))
    except socket.timeout:
        pass
    eq((bound.pending(), stranger.pending()), ([], []), 'answers to malformed datagrams')
    eq(_pick(gw.stats()), dict(sessions=0, handshakes_started=0, handshakes_completed=0,
                               plain_in=n, plain_out=0, records_out=0, replies_local=0,
                               dropped_unknown=0, dropped_malformed=n, dropped_policy=0,
                               dropped_overflow=0), 'gateway stats')


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""No reflection through resumption (issue 10, item 3).

A ClientHello that names a cached session ID skips the cookie exchange
(RFC 6347 4.2.1), so it can carry any source address.  A session ID is
sniffed off the air (here: off a counting relay between the gateway and the
terminator), then ClientHellos naming it are sent with victims' source
addresses (sockets at 127.0.0.3 that also count what arrives).

Asserted:
  * a meter's resumed handshake still has no cookie exchange: 3 datagrams
    (bytes printed);
  * what arrives at each victim port is at most 3 times what was sent from
    it (10 ports with one 101-byte hello each, one port with 50), and the
    forged handshakes end (no retransmissions beyond the budget:
    dropped_amplification counts them);
  * the real owner of an address with a forged handshake in progress is
    not blocked: a gateway behind that very address and port (a relay)
    gets its HelloVerifyRequest, completes its handshake and its meter's
    round trip, which replaces the forged handshake (handshakes_evicted).

Exit 0 passed, 1 failed, 77 psktund missing."""

import os
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
import resil  # noqa: E402

VICTIM = '127.0.0.3'
# the first retransmission after 1 s, so that one is due well within the test;
# otherwise the defaults (handshake_timeout_s 120)
TERM_DTLS = {'retransmit_ms': 1000}
N_SINGLE = 10
N_MANY = 50
BOUND_S = 20


class Victims:
    """Sockets at the victim's address: each counts the bytes sent from it to the
    terminator and the datagrams the terminator sent to it.  A victim made with
    relay=True also carries a gateway's flow (its front socket) from that address."""

    def __init__(self, env, term):
        self.term = term
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.stop = False
        self.all = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        env.defer(self.close)

    def add(self, relay=False):
        v = dict(tx=0, rx=[], client=None)
        v['sock'] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v['sock'].bind((VICTIM, 0))
        v['sock'].setblocking(False)
        self.sel.register(v['sock'], selectors.EVENT_READ, (v, 'back'))
        if relay:
            v['front'] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            v['front'].bind((h.LO, 0))
            v['front'].setblocking(False)
            v['addr'] = '%s:%d' % (h.LO, v['front'].getsockname()[1])
            self.sel.register(v['front'], selectors.EVENT_READ, (v, 'front'))
        self.all.append(v)
        return v

    def start(self):
        self.thread.start()

    def forge(self, v, dgram):
        with self.lock:
            v['tx'] += len(dgram)
        v['sock'].sendto(dgram, self.term)

    def _read(self, v, side):
        try:
            data, src = (v['sock'] if side == 'back' else v['front']).recvfrom(65535)
        except (BlockingIOError, OSError):
            return False
        with self.lock:
            if side == 'back':
                v['rx'].append(data)
            else:
                v['client'] = src
                v['tx'] += len(data)
        if side == 'back' and v['client']:
            v['front'].sendto(data, v['client'])
        elif side == 'front':
            v['sock'].sendto(data, self.term)
        return True

    def _run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.05):
                self._read(*key.data)

    def finish(self):
        """Stop the thread, then take what is already in the sockets."""
        self.stop = True
        self.thread.join(5)
        for v in self.all:
            while self._read(v, 'back'):
                pass

    def rx_bytes(self, v):
        with self.lock:
            return sum(len(d) for d in v['rx'])

    def close(self):
        self.stop = True
        if self.thread.is_alive():
            self.thread.join(5)
        for v in self.all:
            v['sock'].close()
            if 'front' in v:
                v['front'].close()
        self.sel.close()


def session_id_of(counter):
    """The session ID of the first ServerHello the counting relay saw."""
    off = 13 + 12 + 2 + 32
    for d, data in counter.data:
        if d == 'down' and len(data) > off and data[0] == resil.CT_HANDSHAKE and \
                data[13] == resil.HS_SERVER_HELLO:
            return data[off + 1:off + 1 + data[off]]
    raise Fail('no ServerHello seen')


def test_forged_resumption_hellos_reflect_at_most_3x_and_never_block_the_owner(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(16)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, dtls=dict(TERM_DTLS))
    tap = resil.DatagramCounter((h.LO, term.port), keep_data=True)
    env.defer(tap.close)
    m1 = env.meter(name='meter-0001')
    gw = h.gateway(env, keys, [('meter-0001', m1.source)], tap.addr, dtls={'idle_timeout_s': 1})

    # a full handshake; the session ID crosses the air in the ServerHello
    eq(m1.request(b'one', gw.addr), b'E:one', 'meter-0001 first answer')
    sid = session_id_of(tap)
    eq(len(sid), 32, 'session ID length')
    h.wait_until(lambda: gw.stats()['sessions'] == 0, h.T, 'idle close at the gateway')

    # resumed: no cookie exchange, three datagrams
    mark = tap.mark()
    eq(m1.request(b'two', gw.addr), b'E:two', 'meter-0001 resumed answer')
    eq(gw.stats()['handshakes_resumed'], 1, 'gateway handshakes_resumed')
    cost = resil.handshake_cost(tap.since(mark))
    print('resumed handshake: %d bytes in %d datagrams (up %d/%d B, down %d/%d B), '
          'cookie exchange: %s' % (cost['bytes'], cost['datagrams'], cost['up'][0], cost['up'][1],
                                   cost['down'][0], cost['down'][1], cost['cookie']), flush=True)
    eq((cost['cookie'], cost['datagrams']), (False, 3),
       'resumed handshake: cookie exchange, datagrams')

    # forged hellos naming the sniffed session ID, from the victims' addresses
    before = term.stats()
    vs = Victims(env, (h.LO, term.port))
    single = [vs.add() for _ in range(N_SINGLE)]
    resumable = [vs.add() for _ in range(N_SINGLE)]
    many = vs.add()
    owner = vs.add(relay=True)
    vs.start()
    hello = resil.client_hello(session_id=sid)
    eq(len(hello), 101, 'forged ClientHello size')
    for v in single:
        vs.forge(v, resil.client_hello(session_id=sid))
    # with the extended master secret the terminator really resumes: its flight
    # (ServerHello, ChangeCipherSpec, Finished) fits the budget once, not twice
    for v in resumable:
        vs.forge(v, resil.client_hello(session_id=sid,
                                       extensions=resil.EXT_EXTENDED_MASTER_SECRET))
    for _ in range(N_MANY):
        vs.forge(many, resil.client_hello(session_id=sid))

    # the owner of an address with a forged handshake in progress: a gateway behind it
    vs.forge(owner, resil.client_hello(session_id=sid))
    m2 = env.meter(name='meter-0002')
    gw2 = h.gateway(env, keys, [('meter-0002', m2.source)], owner['addr'], name='gateway-owner',
                    dtls={'retransmit_ms': 1000})
    t0 = time.monotonic()
    m2.send(b'owner', gw2.addr)
    try:
        got = m2.recv(timeout=BOUND_S)[0]
    except Fail:
        got = None
    t_owner = time.monotonic() - t0

    # the forged handshakes end; then nothing more goes to the victims
    ended = True
    try:
        h.wait_until(lambda: term.stats()['handshaking'] == 0, BOUND_S, 'forged handshakes to end')
    except Fail:
        ended = False
    vs.finish()
    after = term.stats()
    d = {k: after[k] - before[k] for k in after}
    rx_single = [vs.rx_bytes(v) for v in single]
    rx_resumable = [vs.rx_bytes(v) for v in resumable]
    h.log('single[0]: %r' % [(len(x), resil.records(x)) for x in single[0]['rx']])
    h.log('resumable[0]: %r' % [(len(x), resil.records(x)) for x in resumable[0]['rx']])
    hvr_owner = sum(1 for dg in owner['rx'] if resil.hello_verify_cookie(dg) is not None)
    print('forged: %d ports x one %d-byte hello: %s bytes arrived at each (%.2fx at most); '
          '%d ports x one %d-byte hello that resumes: %s B at each (%.2fx at most); '
          'one port x %d hellos (%d B): %d B arrived (%.2fx); forged handshakes ended within '
          '%d s: %s; dropped_amplification %d, handshakes_evicted %d; the owner: answered %s '
          'in %.2f s, HelloVerifyRequests to it %d'
          % (N_SINGLE, len(hello), sorted(set(rx_single)), max(rx_single) / len(hello),
             N_SINGLE, resumable[0]['tx'], sorted(set(rx_resumable)),
             max(rx_resumable) / resumable[0]['tx'], N_MANY,
             many['tx'], vs.rx_bytes(many), vs.rx_bytes(many) / many['tx'], BOUND_S, ended,
             d.get('dropped_amplification', 0), d.get('handshakes_evicted', 0), got == b'E:owner', t_owner,
             hvr_owner), flush=True)
    eq(got, b'E:owner', 'the owner\'s meter answered')
    for v in single + resumable + [many]:
        if not 0 < vs.rx_bytes(v) <= 3 * v['tx']:
            raise Fail('%d bytes arrived at a victim port that sent %d (want 1 to 3x)'
                       % (vs.rx_bytes(v), v['tx']))
    if not ended:
        raise Fail('forged handshakes still in progress after %d s' % BOUND_S)
    # each resumed flight went once; its retransmission would pass 3x
    if d['dropped_amplification'] < N_SINGLE:
        raise Fail('dropped_amplification %d, want at least %d (a withheld retransmission '
                   'for each resumed forgery)' % (d['dropped_amplification'], N_SINGLE))
    if hvr_owner < 1:
        raise Fail('the owner got no HelloVerifyRequest')
    eq(d['handshakes_evicted'], 1, 'the forged handshake at the owner\'s address replaced')


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""A flood at the terminator's DTLS port while a meter keeps asking.

meter -> gateway -> psktund terminator -> echo, the meter asking every
0.1 s (resending after 0.5 s, at most 10 times).  Meanwhile, from
127.0.0.2 ... 127.0.0.21 (many source ports each), the terminator's port gets:

  * junk shorter than a DTLS record header       -> dropped_malformed
  * junk records (random, and epoch-1 "application data" from nobody)
                                                  -> dropped_unknown
  * forged ClientHellos without a cookie, and with a made-up cookie
                                                  -> a stateless HelloVerifyRequest
                                                     each (cookies_sent), nothing kept
  * real ClientHellos that answer the HelloVerifyRequest with its cookie,
    many per source address, from many addresses: they pass the cookie
    check, so handshake_rate/handshake_burst (per source IP) and
    max_handshakes decide: dropped_limit beyond them, the rest start a
    handshake that never finishes and times out (handshakes_failed); with
    every slot taken, a source holding fewer than the largest holder takes
    that one's oldest (handshakes_evicted, also in handshakes_failed).

Asserted: every meter request answered; the counters account for every
flood datagram the kernel delivered (per category, exactly); at no time
more than max_handshakes handshakes in progress; afterwards no flood
session is left; the terminator's RSS grows by less than a bound (printed).

Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
import resil  # noqa: E402

N_SOURCES = 20                 # 127.0.0.2 .. 127.0.0.21
ALERT_RATE, ALERT_BURST = 100, 200   # terminator.c: lost-session alerts per source
MAX_HANDSHAKES = 16
RATE, BURST = 2, 4             # verified ClientHellos a second per source IP, and in a burst
REAL_PER_SOURCE = 8            # cookie-answering ClientHellos from each source (distinct ports)
HS_TIMEOUT_S = 3
TERM_DTLS = {'retransmit_ms': 1000, 'handshake_timeout_s': HS_TIMEOUT_S,
             'max_handshakes': MAX_HANDSHAKES, 'max_sessions': 64,
             'handshake_rate': RATE, 'handshake_burst': BURST}
# Memory bound.  What the terminator may keep because of the flood:
# max_handshakes half-open GnuTLS server sessions (GnuTLS state with its
# handshake buffers, our session struct and its queue: well under 64 KiB
# each, 16 x 64 KiB = 1 MiB), plus malloc arena slack from the churn of
# short-lived cookie exchanges (nothing is allocated for them, but GnuTLS
# allocates and frees transient buffers).  Junk and cookies keep nothing,
# so the growth must not depend on how much junk arrives.  4 MiB leaves
# room for allocator behaviour; under AddressSanitizer freed memory sits in
# the quarantine first (up to 256 MiB by default), so there the bound is
# only printed and a looser one applied.
RSS_BOUND_KIB = 4096
RSS_BOUND_ASAN_KIB = 64 * 1024


class Flooder:
    """Sockets bound to 127.0.0.2.. (several ports each) that send junk and ClientHellos."""

    def __init__(self, env, target_port, n_sources=N_SOURCES, ports_per_source=4):
        self.to = (h.LO, target_port)
        self.socks = []
        for i in range(n_sources):
            for _ in range(ports_per_source):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(('127.0.0.%d' % (2 + i), 0))
                s.setblocking(False)
                env.defer(s.close)
                self.socks.append(s)
        self.sent = dict(short=0, junk=0, appdata=0, hello=0, hello_badcookie=0, real=0)
        self.hvr = 0       # HelloVerifyRequests seen by the real-ClientHello senders
        self.i = 0

    def _send(self, what, data):
        s = self.socks[self.i % len(self.socks)]
        self.i += 1
        while True:
            try:
                s.sendto(data, self.to)
                break
            except BlockingIOError:
                time.sleep(0.001)
        self.sent[what] += 1

    def round(self, n=200):
        """n of each kind of junk and forged ClientHello, paced (about 1 ms per 40)."""
        for k in range(n):
            self._send('short', os.urandom(1 + k % 12))
            junk = bytearray(os.urandom(13 + k % 200))
            if junk[0] == resil.CT_HANDSHAKE:
                junk[0] = 0
            self._send('junk', bytes(junk))
            # epoch-1 application data from an address without a session
            self._send('appdata', bytes([resil.CT_APPDATA, 0xfe, 0xfd, 0, 1]) + os.urandom(6) +
                       (40).to_bytes(2, 'big') + os.urandom(40))
            self._send('hello', resil.client_hello())
            self._send('hello_badcookie', resil.client_hello(cookie=os.urandom(16), msg_seq=1,
                                                             rec_seq=1))
            if k % 8 == 7:
                time.sleep(0.001)

    def real_hellos(self, env, n_sources=N_SOURCES, per_source=REAL_PER_SOURCE, timeout=5.0):
        """From each source IP, per_source ClientHellos (each from its own port)
        that answer the HelloVerifyRequest with its cookie."""
        socks = []
        for i in range(n_sources):
            for _ in range(per_source):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(('127.0.0.%d' % (2 + i), 0))
                s.settimeout(timeout)
                env.defer(s.close)
                socks.append(s)
        for s in socks:
            rnd = os.urandom(32)
            s.sendto(resil.client_hello(rnd), self.to)
            self.sent['real'] += 1
            deadline = time.monotonic() + timeout
            cookie = None
            while cookie is None:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    d = s.recv(4096)
                except socket.timeout:
                    raise Fail('no HelloVerifyRequest within %.1fs' % timeout)
                cookie = resil.hello_verify_cookie(d)
            self.hvr += 1
            s.sendto(resil.client_hello(rnd, cookie=cookie, msg_seq=1, rec_seq=1), self.to)
        return socks


def flood_run(env, rounds=100, quiet=False):
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, dtls=dict(TERM_DTLS))
    m = resil.RetryMeter(env, 'meter-0001')
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr,
                   dtls={'retransmit_ms': 500, 'handshake_timeout_s': 4})
    if not m.ask(b'warmup', gw.addr, 0.5, 20)['answered']:
        raise Fail('warm-up request unanswered')
    pid = term.proc.pid
    asan = resil.is_asan(pid)
    t0 = term.stats()
    drops0 = resil.udp_drops(term.port)
    rss0 = resil.rss_kib(pid)
    rss_peak = [rss0]
    hs_peak = [0]

    stop = threading.Event()
    threads, errors = resil.run_meters([m], gw.addr, None, every=0.5, tries=10, interval=0.1,
                                       stop=stop, tag=b'fl')

    def watch():
        while not stop.wait(0.05):
            try:
                rss_peak[0] = max(rss_peak[0], resil.rss_kib(pid))
                hs_peak[0] = max(hs_peak[0], term.stats()['handshaking'])
            except (OSError, Fail, h.subprocess.TimeoutExpired):
                pass
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    fl = Flooder(env, term.port)
    t_start = time.monotonic()
    try:
        half = rounds // 2
        for _ in range(half):
            fl.round()
        fl.real_hellos(env)
        for _ in range(rounds - half):
            fl.round()
        t_flood = time.monotonic() - t_start
        n_flood = sum(fl.sent.values()) + fl.hvr    # hvr: the cookie-answering second hellos
        # the flood's handshakes time out; nothing of the flood stays
        h.wait_until(lambda: term.stats()['handshaking'] == 0 and term.stats()['sessions'] == 1,
                     HS_TIMEOUT_S + 15, 'flood handshakes timed out, one session left')
        # the meter kept being served throughout
        h.wait_until(lambda: len(m.results) >= 10, h.T, 'meter requests')
    finally:
        stop.set()
        resil.join_all(threads, errors, 10)
        watcher.join(5)
    resil.check_all_answered([m])
    t1 = term.stats()
    rss1 = resil.rss_kib(pid)
    drops = resil.udp_drops(term.port) - drops0
    d = {k: t1[k] - t0[k] for k in t1}
    s = resil.summary([m])
    lat = [r['latency'] for r in m.results]
    out = dict(sent=dict(fl.sent), hvr=fl.hvr, delta=d, drops=drops, rss0=rss0, rss1=rss1,
               rss_peak=rss_peak[0], hs_peak=hs_peak[0], asan=asan, summary=s, lat=lat,
               t_flood=t_flood, n_flood=n_flood, term=term, gw=gw, meter=m)
    if not quiet:
        print('flood: %d datagrams in %.1fs from %d source addresses (%s; %d cookie-answering '
              'hellos), kernel drops at the terminator socket %d; terminator counters: '
              'dropped_malformed %d, dropped_unknown %d, cookies_sent %d, dropped_limit %d, '
              'handshakes_started %d -> failed %d (evicted %d), lost_session_alerts %d; handshaking peak %d '
              '(max_handshakes %d); meter: %d requests all answered, first try %d (%.0f%%), '
              'latency %s; terminator VmRSS %d KiB before, peak %d, after %d: growth %+d KiB '
              '(peak %+d)%s' % (
                  n_flood, t_flood, N_SOURCES,
                  ', '.join('%s %d' % kv for kv in sorted(fl.sent.items())), fl.hvr, drops,
                  d['dropped_malformed'], d['dropped_unknown'], d['cookies_sent'],
                  d['dropped_limit'], d['handshakes_started'], d['handshakes_failed'],
                  d['handshakes_evicted'], d['lost_session_alerts'], hs_peak[0], MAX_HANDSHAKES, s['requests'],
                  s['first_try'], resil.pct(s['first_try'], s['requests']),
                  resil.stats_line(lat, 'ms', 1000), rss0, rss_peak[0], rss1, rss1 - rss0,
                  rss_peak[0] - rss0, ' (AddressSanitizer build)' if asan else ''), flush=True)
    return out


def test_flood_leaves_meter_served_memory_bounded_and_counted(env):
    r = flood_run(env)
    d, sent, drops = r['delta'], r['sent'], r['drops']
    n_real = sent['real']
    # every flood datagram that reached the daemon is in exactly one counter
    accounted = (d['dropped_malformed'] + d['dropped_unknown'] + d['cookies_sent'] +
                 d['dropped_limit'] + d['handshakes_started'])
    eq(accounted + drops, r['n_flood'],
       'flood datagrams: counted + kernel drops (%r, drops %d)' % (d, drops))
    if drops == 0:
        eq(d['dropped_malformed'], sent['short'], 'dropped_malformed')
        eq(d['dropped_unknown'], sent['junk'] + sent['appdata'], 'dropped_unknown')
        eq(d['cookies_sent'], sent['hello'] + sent['hello_badcookie'] + n_real, 'cookies_sent')
    else:
        print('note: the kernel dropped %d flood datagrams at the terminator socket; '
              'checked the total only' % drops, flush=True)
    # every cookie-answering hello passed the cookie check: a handshake or a limit drop
    eq(d['handshakes_started'] + d['dropped_limit'], r['hvr'],
       'handshakes_started + dropped_limit for the cookie-answering hellos')
    # the per-source rate: at most BURST (+ what refills while they arrive) from each address;
    # slots are taken once each, again when one frees up, or by evicting another source's
    # (20 sources x BURST want more than MAX_HANDSHAKES: fair shares evict)
    kept = d['handshakes_started'] - d['handshakes_evicted']
    if not MAX_HANDSHAKES <= kept < MAX_HANDSHAKES + N_SOURCES:
        raise Fail('handshakes_started %d - handshakes_evicted %d: want max_handshakes (%d) '
                   'plus at most what freed up' % (d['handshakes_started'],
                                                   d['handshakes_evicted'], MAX_HANDSHAKES))
    if not d['handshakes_evicted']:
        raise Fail('handshakes_evicted 0: %d sources wanted more than %d slots'
                   % (N_SOURCES, MAX_HANDSHAKES))
    if r['hs_peak'] > MAX_HANDSHAKES:
        raise Fail('%d handshakes in progress at once, max_handshakes is %d'
                   % (r['hs_peak'], MAX_HANDSHAKES))
    eq(d['handshakes_failed'], d['handshakes_started'], 'flood handshakes all failed (timed out)')
    eq((d['handshakes_completed'], r['term'].stats()['sessions']), (0, 1),
       'terminator handshakes_completed by the flood, sessions after it')
    # the lost-session alert is rate-limited per source address (terminator.c:
    # 100 a second, bursts of 200): never more than that, whatever arrives
    bound = N_SOURCES * (ALERT_BURST + ALERT_RATE * (r['t_flood'] + 1))
    if not 0 < d['lost_session_alerts'] <= min(bound, sent['appdata']):
        raise Fail('lost_session_alerts %d for %d epoch-1 records from %d sources (bound %d)'
                   % (d['lost_session_alerts'], sent['appdata'], N_SOURCES, bound))
    # the meter's session was not touched
    g = r['gw'].stats()
    eq((g['handshakes_completed'], g['rehandshakes'], g['handshakes_failed']), (1, 0, 0),
       'gateway handshakes_completed, rehandshakes, handshakes_failed')
    bound = RSS_BOUND_ASAN_KIB if r['asan'] else RSS_BOUND_KIB
    growth = max(r['rss1'], r['rss_peak']) - r['rss0']
    if growth >= bound:
        raise Fail('terminator RSS grew by %d KiB (before %d, peak %d, after %d), bound %d KiB'
                   % (growth, r['rss0'], r['rss_peak'], r['rss1'], bound))


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""The gateway's memory for datagrams that wait for a handshake is bounded:
1,000 meters whose cloud never answers, each sending two datagrams too big
for one record (dropped and counted on arrival) and more full-size ones than
its queue holds. The counters come out exactly, the queues together hold no
more than dtls.queue_bytes (4 MiB by default), and the gateway's RSS stays
small. Sources are 127.1.x.y, all on lo.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
import resil  # noqa: E402

METERS = 1000
OVERSIZE = 65000       # a LAN datagram no record at mtu 1280 can carry
OVERSIZE_EACH = 2
FITS = 1200            # fits one record (at most 1251 bytes at mtu 1280)
FITS_EACH = 9          # queue_len (8) + 1
BUDGET = 4 << 20       # dtls.queue_bytes' default
RSS_BOUND_KIB = 16 * 1024          # issue 10: 1,000 meters with full queues under 16 MiB
RSS_BOUND_ASAN_KIB = 64 * 1024


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise Fail('no VmRSS for %d' % pid)


def source(i):
    return '127.1.%d.%d' % (i // 250, i % 250 + 1)


def test_a_thousand_stuck_meters_stay_within_the_queue_budget(env):
    h.psktund()
    cloud = env.udp()              # bound, never read: no handshake ever completes
    keys = {'meter-%04d' % i: os.urandom(16) for i in range(METERS)}
    meters = [('meter-%04d' % i, source(i)) for i in range(METERS)]
    gw = h.gateway(env, keys, meters, '%s:%d' % cloud.getsockname(), dtls={})
    rss0 = rss_kib(gw.proc.pid)
    sent = 0
    big, fit = bytes(OVERSIZE), bytes(FITS)
    for i in range(METERS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((source(i), 0))
            for _ in range(OVERSIZE_EACH):
                s.sendto(big, ('127.0.0.1', gw.port))
            for _ in range(FITS_EACH):
                s.sendto(fit, ('127.0.0.1', gw.port))
        finally:
            s.close()
        sent += OVERSIZE_EACH + FITS_EACH
        # one meter at a time: 64 KiB datagrams would overflow the socket's buffer
        h.wait_until(lambda: gw.stats_now()['plain_in'] == sent, 30, 'plain_in == %d' % sent,
                     interval=0.002)
    st = gw.stats()
    rss = rss_kib(gw.proc.pid)
    queued = BUDGET // FITS
    # a meter none of whose datagrams could wait gets no session (nothing to shake hands for)
    h.log('gateway RSS %d KiB at start, %d KiB with %d stuck meters; queued_bytes=%s'
          % (rss0, rss, METERS, st.get('queued_bytes')))
    print('gateway RSS: %.1f MiB at start, %.1f MiB with %d stuck meters (queued_bytes=%s)'
          % (rss0 / 1024, rss / 1024, METERS, st.get('queued_bytes')), file=sys.stderr)
    eq((st['plain_in'], st['dropped_oversize'], st['dropped_overflow'], st['queued_bytes'],
        st['sessions'], st['dropped_unknown'], st['handshakes_completed']),
       (METERS * (OVERSIZE_EACH + FITS_EACH), METERS * OVERSIZE_EACH,
        METERS * FITS_EACH - queued, queued * FITS, -(-queued // 8), 0, 0),
       'plain_in, dropped_oversize, dropped_overflow, queued_bytes, sessions, dropped_unknown, '
       'handshakes_completed')
    # what the queues hold is bounded by the budget; the rest is 1,000 sessions' bookkeeping.
    # Under AddressSanitizer every allocation has redzones and freed memory waits in its
    # quarantine (test_flood.py): there RSS says little, and only a looser bound applies.
    bound = RSS_BOUND_ASAN_KIB if resil.is_asan(gw.proc.pid) else RSS_BOUND_KIB
    if rss - rss0 > bound:
        raise Fail('gateway RSS grew by %d KiB (from %d to %d KiB; bound %d KiB)'
                   % (rss - rss0, rss0, rss, bound))


if __name__ == '__main__':
    h.main(globals())

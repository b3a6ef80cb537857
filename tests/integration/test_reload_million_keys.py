#!/usr/bin/env python3
"""A reload of a million keys under traffic stalls nothing.

meter -> psktund gateway -> psktund terminator (1,000,000 keys) -> echo. The
meter asks, waits for the answer, asks again, without pause, and records
each round trip. The terminator reloads (SIGHUP) the same million keys: the
key file is read, sorted and checked in libuv's thread pool and the old keys
freed there, so the loop serves on. Every request is answered (none lost) and
no round trip during the reload comes near the reload's own length (before,
the loop stopped for all of it: about 1.6 s here). Prints the figures.
PSKTUN_RELOAD_KEYS sets the number of keys (default 1000000).
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

N_KEYS = int(os.environ.get('PSKTUN_RELOAD_KEYS', '1000000'))


def _write_big_keys(path, meter_key, n):
    raw = os.urandom(16 * (n - 1)).hex()
    with open(path, 'w') as f:
        f.write('meter-0001:%s\n' % meter_key.hex())
        step = 100000
        for base in range(0, n - 1, step):
            f.write(''.join('k%07d:%s\n' % (i, raw[32 * i:32 * i + 32])
                            for i in range(base, min(base + step, n - 1))))
    os.chmod(path, 0o600)


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))]


def test_a_reload_of_a_million_keys_delays_no_datagram_for_long(env):
    h.psktund()
    key = os.urandom(16)
    echo = env.echo(prefix=b'E:')
    port = h.free_udp_port()
    term = h.Daemon(env, 'terminator', 'terminator',
                    [dict(name='t1', accept='%s:%d' % (h.LO, port), connect=echo.addr)], {'meter-0001': key})
    _write_big_keys(term.keyfile, key, N_KEYS)
    env.defer(term.stop)
    term.start(timeout=120)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, {'meter-0001': key}, [('meter-0001', m.source)], '%s:%d' % (h.LO, port))
    eq(m.request(b'warm', gw.addr), b'E:warm', 'first reply')

    rtts = []           # (t_sent, rtt or None)
    stop = threading.Event()

    def ask():
        i = 0
        while not stop.is_set():
            p = b'r%d' % i
            t0 = time.monotonic()
            try:
                got = m.request(p, gw.addr, timeout=10)
            except Fail:
                rtts.append((t0, None))
                i += 1
                continue
            rtts.append((t0, time.monotonic() - t0 if got == b'E:' + p else None))
            i += 1

    th = threading.Thread(target=ask, daemon=True)
    th.start()
    try:
        h.wait_until(lambda: len(rtts) >= 200, h.T, '200 round trips before the reload')
        t_hup = time.monotonic()
        eq(term.reload(timeout=120), 'configuration reloaded', 'reload')
        t_done = time.monotonic()
        n_at_done = len(rtts)
        h.wait_until(lambda: len(rtts) >= n_at_done + 200, h.T, '200 round trips after the reload')
    finally:
        stop.set()
        th.join(15)
    lost = [t for t, r in rtts if r is None]
    eq(len(lost), 0, 'requests unanswered')
    before = [r for t, r in rtts if t < t_hup]
    during = [r for t, r in rtts if t_hup <= t < t_done]
    reload_s = t_done - t_hup
    line = ('reload of %d keys under traffic: %.2f s from SIGHUP to "configuration reloaded"; round trips '
            'before: n=%d p50 %.2f ms p99 %.2f ms max %.2f ms; during: n=%d p50 %.2f ms p99 %.2f ms '
            'max %.2f ms; none lost' % (
                N_KEYS, reload_s, len(before), statistics.median(before) * 1000, _pct(before, 99) * 1000,
                max(before) * 1000, len(during), statistics.median(during) * 1000 if during else 0,
                _pct(during, 99) * 1000 if during else 0, max(during) * 1000 if during else 0))
    slow = sorted(((r, t - t_hup) for t, r in rtts if t_hup <= t < t_done), reverse=True)[:3]
    line += '; slowest during: %s' % ', '.join('%.0f ms at +%.2f s' % (r * 1000, at) for r, at in slow)
    print(line, flush=True)
    h.log(line)
    # The loop served on: round trips kept coming during the reload, and none
    # waited for a good part of it (a stalled loop makes one wait for all of it).
    if len(during) < 10:
        raise Fail('only %d round trips during a %.2f s reload: the loop stalled' % (len(during), reload_s))
    if max(during) > reload_s / 4:
        raise Fail('a round trip took %.0f ms during a %.0f ms reload: the loop stalled'
                   % (max(during) * 1000, reload_s * 1000))


if __name__ == '__main__':
    h.main(globals())

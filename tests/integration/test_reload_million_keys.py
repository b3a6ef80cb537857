#!/usr/bin/env python3
"""A reload of a million keys under traffic delays no datagram by more than 50 ms.

meter -> psktund gateway -> psktund terminator (1,000,000 keys) -> echo. The
meter asks, waits for the answer, asks again, without pause, and records
each round trip. The terminator reloads (SIGHUP) the same million keys,
three times: the key file is read, sorted, checked and compared with the
running keys on a thread of its own at the lowest priority (SCHED_IDLE, nice +10), the old
keys are freed there too, and the commit on the loop looks only at the
identities whose key went or changed (none here). Before, the loop stopped
for the whole reload (1.6 s here), then for 53-107 ms at a time.

Each reload is followed by a quiet window as long as it (same traffic, no
reload): what the machine's own load does to a round trip, measured beside
it. On a busy 2-core machine a round trip now and then takes 30-90 ms with
no reload at all; what a reload adds must stay under 50 ms. So: every
request is answered (none lost), and the longest round trip of a reload,
median of three, is at most 50 ms more than the longest of a quiet window,
median of three (on an idle machine that is 5-15 ms: a bound of 55-65 ms).
The stall the one big read() caused was 70-100 ms in every reload. Prints the
figures.
PSKTUN_RELOAD_KEYS sets the number of keys (default 1000000),
PSKTUN_RELOADS the number of reloads (default 3, at least 3).
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
RELOADS = max(3, int(os.environ.get('PSKTUN_RELOADS', '3')))
BOUND_MS = 50       # issue 14, item 5


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


def _figures(rtts):
    ms = [r * 1000 for r in rtts]
    return 'n=%d p50 %.2f ms p99 %.2f ms max %.2f ms' % (len(ms), statistics.median(ms), _pct(ms, 99), max(ms))


class Asker:
    """The meter on a thread: asks, waits for the answer, asks again; (t_sent, rtt or None)."""

    def __init__(self, m, to):
        self.m, self.to = m, to
        self.rtts = []
        self.stop = threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        i = 0
        while not self.stop.is_set():
            p = b'r%d' % i
            t0 = time.monotonic()
            try:
                got = self.m.request(p, self.to, timeout=10)
            except Fail:
                got = None
            self.rtts.append((t0, time.monotonic() - t0 if got == b'E:' + p else None))
            i += 1

    def between(self, t0, t1):
        return [r for t, r in self.rtts if t0 <= t < t1]

    def wait_count(self, n, what):
        h.wait_until(lambda: len(self.rtts) >= n, h.T, what)

    def end(self):
        self.stop.set()
        self.th.join(15)


def test_a_reload_of_a_million_keys_delays_no_datagram_by_more_than_50_ms(env):
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

    a = Asker(m, gw.addr)
    windows = []        # (t0, t1) of each reload
    quiet = []          # (t0, t1) of each quiet window
    try:
        a.wait_count(200, '200 round trips before the reloads')
        for i in range(RELOADS):
            t_hup = time.monotonic()
            eq(term.reload(timeout=120), 'configuration reloaded', 'reload %d' % (i + 1))
            windows.append((t_hup, time.monotonic()))
            a.wait_count(len(a.rtts) + 100, '100 round trips after reload %d' % (i + 1))
            t_quiet = time.monotonic()
            time.sleep(windows[-1][1] - t_hup)      # a window of traffic as long as the reload
            quiet.append((t_quiet, time.monotonic()))
    finally:
        a.end()
    lost = [t for t, r in a.rtts if r is None]
    eq(len(lost), 0, 'requests unanswered')
    lines = []
    quiet_worst = []
    for i, (t0, t1) in enumerate(quiet):
        q = a.between(t0, t1)
        lines.append('quiet window %d (%.2f s, no reload): %s' % (i + 1, t1 - t0, _figures(q)))
        quiet_worst.append(max(q))
    worst = []
    for i, (t0, t1) in enumerate(windows):
        during = a.between(t0, t1)
        if len(during) < 10:
            raise Fail('only %d round trips during reload %d (%.2f s): the loop stalled' % (len(during), i + 1,
                                                                                            t1 - t0))
        slow = sorted(((r, t - t0) for t, r in a.rtts if t0 <= t < t1), reverse=True)[:3]
        lines.append('reload %d of %d keys: %.2f s from SIGHUP to "configuration reloaded"; round trips during: '
                     '%s; slowest %s' % (i + 1, N_KEYS, t1 - t0, _figures(during),
                                         ', '.join('%.0f ms at +%.2f s' % (r * 1000, at) for r, at in slow)))
        worst.append(max(during))
    lines.append('none lost')
    for line in lines:
        print(line, flush=True)
        h.log(line)
    added = (statistics.median(worst) - statistics.median(quiet_worst)) * 1000
    line = ('longest round trip, median of %d: reloads %.1f ms (each: %s), quiet windows %.1f ms (each: %s); '
            'a reload added %.1f ms' % (len(worst), statistics.median(worst) * 1000,
                                        ', '.join('%.1f' % (w * 1000) for w in worst),
                                        statistics.median(quiet_worst) * 1000,
                                        ', '.join('%.1f' % (w * 1000) for w in quiet_worst), added))
    print(line, flush=True)
    h.log(line)
    if added > BOUND_MS:
        raise Fail('a reload added %.1f ms to the longest round trip (medians of %d), over %d ms'
                   % (added, len(worst), BOUND_MS))


if __name__ == '__main__':
    h.main(globals())

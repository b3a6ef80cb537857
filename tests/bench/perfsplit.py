#!/usr/bin/env python3
"""perfsplit: where each psktund's CPU time goes, kernel included, from `perf record -a -g`
(the cpu-clock software event: no hardware counters needed).

Two loads, each on fresh processes (the bench's helpers, 127.0.0.1 only):
  throughput  N meters x K in flight through gateway -> terminator -> echo; per
              forwarded datagram (plain_in + plain_out of that daemon)
  handshakes  M new meters at once; per handshake (handshakes_completed)
Each sample of a psktund is put in one group: the kernel by the system call it
is under (sendto, sendmmsg, recvmmsg, socket, ...; `page fault`; `kernel,
other` for interrupts and the rest), user space by object (psktun, GnuTLS =
libgnutls + libnettle + libhogweed, libc, libuv). Microseconds are samples /
frequency, divided by the datagrams or handshakes of the window.

Usage: perfsplit.py [--meters N] [--burst M] [--seconds S] [--freq HZ]
Binaries from the environment as for bench.py (PSKTUND PSKTUNCTL BENCH_BIN);
`make bench-profile BENCH_PROFILE_FLAGS=--perf` runs it. Needs perf and root
(or perf_event_paranoid <= 0)."""

import argparse
import collections
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

# handshake_rate 0: every gateway here is one source (127.0.0.1), see bench.py
DTLS = {'retransmit_ms': 1000, 'handshake_timeout_s': 5, 'max_sessions': 20000,
        'idle_timeout_s': 600, 'handshake_rate': 0}
USER_GROUPS = (('libgnutls', 'GnuTLS'), ('libnettle', 'GnuTLS'), ('libhogweed', 'GnuTLS'),
               ('libc.', 'libc'), ('libc-', 'libc'), ('libuv', 'libuv'), ('psktund', 'psktun'))


def group(frames):
    """frames: [(symbol, object)], innermost first."""
    sym, obj = frames[0] if frames else ('?', '?')
    if 'kernel' not in obj:
        base = os.path.basename(obj.strip('()'))
        for pfx, g in USER_GROUPS:
            if base.startswith(pfx):
                return 'user: ' + g
        return 'user: other'
    for s, _ in reversed(frames):      # outermost first: the system call entered
        # io_uring_enter shows as __do_sys_io_uring_enter on some kernels
        m = re.match(r'__(?:x64|do)_sys_(\w+)$', s)
        if m:
            return 'kernel: ' + m.group(1)
        if s == 'exc_page_fault':
            return 'kernel: page fault'
    return 'kernel: other'


def samples(path, pids):
    """{pid: Counter(group)} over the whole recording."""
    out = subprocess.run(['perf', 'script', '-i', path, '-F', 'comm,pid,ip,sym,dso'],
                         capture_output=True, text=True, check=True).stdout
    res = {p: collections.Counter() for p in pids}
    head, frames = None, []
    for line in out.splitlines() + ['']:
        if not line.strip():
            if head in res:
                res[head][group(frames)] += 1
            head, frames = None, []
        elif not line[0].isspace():
            parts = line.split()
            head = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            frames = []
        else:
            p = line.split()
            if len(p) >= 3:
                frames.append((p[1], p[-1]))
    return res


class Recording:
    """perf record -a -g, started disabled; enable() returns once perf acknowledges
    that it samples (its control fifo), stop() ends it."""

    def __init__(self, path, freq):
        d = os.path.dirname(path)
        self.ctl, self.ack = os.path.join(d, 'perf.ctl'), os.path.join(d, 'perf.ack')
        for f in (self.ctl, self.ack):
            if os.path.exists(f):
                os.unlink(f)
            os.mkfifo(f)
        self.p = subprocess.Popen(['perf', 'record', '-a', '-g', '-F', str(freq), '-o', path,
                                   '-D', '-1', '--control', 'fifo:%s,%s' % (self.ctl, self.ack)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _command(self, cmd):
        with open(self.ctl, 'w') as c:
            c.write(cmd + '\n')
        with open(self.ack) as a:
            if a.readline().strip() != 'ack':
                raise bench.PhaseError('perf did not acknowledge %r' % cmd)

    def enable(self):
        self._command('enable')

    def stop(self):
        self._command('disable')
        self.p.send_signal(signal.SIGINT)
        self.p.wait(60)


def count_syscalls(pid, seconds, path):
    """perf stat: the system calls pid enters (any thread) in the next `seconds`."""
    return subprocess.Popen(['perf', 'stat', '-x', ',', '-e', 'raw_syscalls:sys_enter', '-p', str(pid),
                             '-o', path, '--', 'sleep', str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def syscalls_counted(path):
    with open(path) as f:
        for line in f:
            fields = line.split(',')
            if len(fields) > 2 and 'sys_enter' in line and fields[0].strip().isdigit():
                return int(fields[0])
    return 0


def report(title, unit, counts, per, freq):
    print('\n%s' % title)
    for name, c in counts.items():
        total = sum(c.values())
        if not total or not per[name]:
            print('  %s: no samples' % name)
            continue
        us = 1e6 / freq / per[name]
        print('  %s: %.2f us CPU per %s (%d samples, %d %ss)'
              % (name, total * us, unit, total, per[name], unit))
        for g, n in c.most_common():
            if n * 200 < total:
                continue
            print('    %-24s %6.2f us  %5.1f%%' % (g, n * us, 100.0 * n / total))


def main():
    ap = argparse.ArgumentParser(description='psktund CPU split from perf, kernel included')
    ap.add_argument('--meters', type=int, default=100)
    ap.add_argument('--inflight', type=int, default=4)
    ap.add_argument('--burst', type=int, default=2000)
    ap.add_argument('--seconds', type=float, default=4)
    ap.add_argument('--freq', type=int, default=5000)
    a = ap.parse_args()
    if not shutil.which('perf'):
        print('perfsplit: perf is not installed (Debian: linux-perf)')
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    bins = bench.Bins()
    top = tempfile.mkdtemp(prefix='psktun-perfsplit-')
    try:
        print('psktun perfsplit: perf record -a -g -F %d (cpu-clock), %d CPUs' % (a.freq, os.cpu_count()))
        # Throughput: sessions first, then a window of steady load.
        w = bench.World(top, 'throughput')
        try:
            gw, term, port = bench.tunnel(w, bins, a.meters, DTLS)
            bench.loadgen(bins, port, a.meters, once=True, loss_ms=250, deadline=30)
            rec = Recording(os.path.join(top, 'tp.data'), a.freq)
            lg = subprocess.Popen([bins.loadgen, '-t', '%s:%d' % (bench.LO, port), '-a',
                                   bench.METER_ADDR, '-b', str(bench.METER_BASE), '-n', str(a.meters), '-k', str(a.inflight),
                                   '-l', '200', '-w', '0.5', '-d', str(a.seconds + 30)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            bench.wait_until(lambda: gw.stats()['plain_in'] > 10 * a.meters, 10, 'the load')
            rec.enable()
            s0 = {d.name: d.stats() for d in (gw, term)}
            t0 = time.monotonic()
            sc = {d.name: (count_syscalls(d.pid, a.seconds, os.path.join(top, d.name + '.stat')),
                           os.path.join(top, d.name + '.stat')) for d in (gw, term)}
            bench.wait_until(lambda: time.monotonic() - t0 >= a.seconds, a.seconds + 5, 'the window')
            s1 = {d.name: d.stats() for d in (gw, term)}
            for p, _ in sc.values():
                p.wait(30)
            rec.stop()
            lg.kill()
            lg.wait()
            pids = {gw.pid: 'gateway', term.pid: 'terminator'}
        finally:
            w.stop()
        got = samples(os.path.join(top, 'tp.data'), pids)
        per = {n: sum(s1[n][k] - s0[n][k] for k in ('plain_in', 'plain_out'))
               for n in ('gateway', 'terminator')}
        io = s1['gateway'].get('io_uring')
        print('\nsends on session sockets: %s' % {1: 'io_uring', 0: 'system calls'}.get(io, '?'))
        for n, (_, path) in sc.items():
            print('  %s: %.2f system calls per forwarded datagram (perf stat, %.0f s)'
                  % (n, syscalls_counted(path) / per[n] if per[n] else 0, a.seconds))
        report('throughput (N=%d x K=%d, 64 B; %.0f round trips/s in the window): per forwarded '
               'datagram' % (a.meters, a.inflight, (s1['gateway']['plain_out'] -
                                                    s0['gateway']['plain_out']) / a.seconds),
               'datagram',
               {pids[p]: c for p, c in got.items()}, per, a.freq)
        # Handshakes: the recording spans the whole burst.
        w = bench.World(top, 'handshakes')
        try:
            gw, term, port = bench.tunnel(w, bins, a.burst, DTLS)
            rec = Recording(os.path.join(top, 'hs.data'), a.freq)
            rec.enable()
            lg = bench.loadgen(bins, port, a.burst, once=True, loss_ms=250, deadline=30)
            rec.stop()
            st = {d.name: d.stats() for d in (gw, term)}
            pids = {gw.pid: 'gateway', term.pid: 'terminator'}
        finally:
            w.stop()
        got = samples(os.path.join(top, 'hs.data'), pids)
        report('handshakes (M=%d at once, %d through, %.0f/s): per handshake'
               % (a.burst, lg['done'], lg['rate']), 'handshake',
               {pids[p]: c for p, c in got.items()},
               {n: st[n]['handshakes_completed'] for n in st}, a.freq)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

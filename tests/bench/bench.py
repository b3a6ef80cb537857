#!/usr/bin/env python3
"""bench: psktun's loopback benchmark driver; runs every phase and prints one table.

Phases (each with its own deadline, each on fresh processes, 127.0.0.1 only):
  gnutls     hsmem: GnuTLS's in-memory DTLS-PSK handshake and record rates, one core
  throughput loadgen through gateway -> terminator -> echo and through
             relay1 -> relay2 -> echo (plain per-flow UDP relays), alternated, medians
  handshakes M new meters at once through the tunnel; RSS per session; idle close;
             RSS per idle (resumable) meter; the same meters again (resumed)
  wire       a counting proxy between gateway and terminator: record overhead,
             handshake bytes (a full one with the cookie exchange, a resumed one
             without: RFC 6347 4.2.1); the full one without a cookie from hsmem
  workers    the terminator with workers = 1 and 2: throughput and M handshakes
  scale      10,000 meters on one gateway: handshakes, RSS, round trips vs plain
  burst      3,000 and 10,000 meters send one datagram each at the same moment
             (default settings, never re-sent): first datagrams answered, the
             gateway's kernel drops (dropped_kernel and /proc/net/udp), time to the last
  uring*     io_uring against system calls (PSKTUN_IO_URING=0): tests/bench/uring_phases.py

Binaries come from the environment (the Makefile sets them):
  PSKTUND PSKTUNCTL  the daemon and its control client
  BENCH_BIN          directory with loadgen, udprelay, hsmem
Options: --quick (a smoke run: small numbers, one run each, well under a minute),
--runs R, --keep (keep the work directory), -v (log each step to stderr).
Exit status: 0 when the table was printed, 1 when a phase failed (its lines say why).
"""

import argparse
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import fleet    # issue 14's phases and lines (tests/bench/fleet.py)

LO = '127.0.0.1'
PRIO = ('NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+COMP-NULL:'
        '+SIGN-ECDSA-SHA256:%NO_TICKETS')      # PSKTUN_DEFAULT_PRIORITY
METER_BASE = 20000          # meters bind METER_ADDR:20000.. (below the ephemeral range)
# ... on an address of this run's own: the whole of 127.0.0.0/8 is this host's,
# and two benchmarks at once (parallel CI jobs, tests/check.sh runs side by
# side) would otherwise fight over 127.0.0.1:20000 ("Address already in use").
METER_ADDR = '127.%d.%d.%d' % (random.randrange(1, 255), random.randrange(256), random.randrange(1, 255))
VERBOSE = False


class PhaseError(Exception):
    pass


def log(msg):
    if VERBOSE:
        print('[bench %7.2f] %s' % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


T0 = time.monotonic()


def wait_until(pred, timeout, what, interval=0.02):
    """Poll pred() until it is true (returned) or the deadline passes (PhaseError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise PhaseError('timed out after %.0fs waiting for %s' % (timeout, what))
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LO, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def kv(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition('=')
        if sep:
            try:
                out[k.strip()] = float(v) if '.' in v else int(v)
            except ValueError:
                out[k.strip()] = v.strip()
    return out


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise PhaseError('no VmRSS for pid %d' % pid)


def cpu_s(pid):
    """utime + stime of a process, seconds."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


# ----------------------------------------------------------------- processes

class Proc:
    """A child process with its stderr in a log file; stopped with SIGTERM."""

    def __init__(self, world, name, argv, stdout=subprocess.DEVNULL, env=None):
        self.name = name
        self.logpath = world.path(name + '.log')
        self.logf = open(self.logpath, 'wb')
        log('start %s: %s' % (name, ' '.join(argv)))
        self.p = subprocess.Popen(argv, stdout=stdout, stderr=self.logf,
                                  stdin=subprocess.DEVNULL, env=env)
        world.procs.append(self)

    @property
    def pid(self):
        return self.p.pid

    def output(self):
        with open(self.logpath, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def wait_ready(self, word='ready', timeout=15):
        def ready():
            if self.p.poll() is not None:
                raise PhaseError('%s exited (%s): %s' % (self.name, self.p.returncode,
                                                          self.output()[-800:]))
            return word in self.output()
        wait_until(ready, timeout, '%s to say %r' % (self.name, word))

    def stop(self, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


class World:
    """One phase's processes and files; stop() ends every process it started."""

    def __init__(self, top, name):
        self.dir = os.path.join(top, name)
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def stop(self):
        while self.procs:
            self.procs.pop().stop()


class Bins:
    def __init__(self):
        self.psktund = self._need('PSKTUND', 'psktund')
        self.psktunctl = self._need('PSKTUNCTL', 'psktunctl')
        d = os.environ.get('BENCH_BIN', os.path.dirname(os.path.abspath(__file__)))
        self.loadgen = os.path.join(d, 'loadgen')
        self.udprelay = os.path.join(d, 'udprelay')
        self.hsmem = os.path.join(d, 'hsmem')
        for p in (self.loadgen, self.udprelay, self.hsmem):
            if not os.access(p, os.X_OK):
                sys.exit('bench: %s missing (make bench builds it)' % p)

    @staticmethod
    def _need(var, name):
        p = os.environ.get(var) or shutil.which(name)
        if not p or not os.access(p, os.X_OK):
            sys.exit('bench: %s not found (set %s)' % (name, var))
        return p


class Daemon:
    """psktund with its own directory, config, keys and control socket."""

    def __init__(self, world, bins, name, mode, accept, connect, n_meters, dtls, prefix=None,
                 workers=1):
        self.bins = bins
        self.name = name
        self.sock = world.path(name + '.sock')
        conf = world.path(name + '.conf')
        keys = world.path('keys.psk')
        if not os.path.exists(keys):
            write_keys(keys, max(n_meters, 1))
        lines = ['mode = "%s";' % mode, 'keys = "keys.psk";', 'control = "%s";' % self.sock,
                 'tunnels = ({ name = "bench"; accept = "%s:%d"; connect = "%s:%d"; });'
                 % (LO, accept, LO, connect)]
        if workers > 1:
            lines.append('workers = %d;' % workers)
        if mode == 'gateway':
            lines.append('meters = (')
            lines.append(',\n'.join('{ identity = "%s"; source = "%s:%d"; }'
                                    % (identity(i), METER_ADDR, METER_BASE + i)
                                    for i in range(n_meters)))
            lines.append(');')
        lines.append('dtls = { %s };' % ' '.join('%s = %s;' % kv_ for kv_ in dtls.items()))
        with open(conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.proc = Proc(world, name, (prefix or []) + [bins.psktund, '-f', '-c', conf])
        self.proc.wait_ready(timeout=60 if prefix else 30)
        wait_until(lambda: os.path.exists(self.sock), 10, name + "'s control socket")

    @property
    def pid(self):
        return self.proc.pid

    def established(self):
        r = subprocess.run([self.bins.psktunctl, '-s', self.sock, 'sessions'],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise PhaseError('psktunctl %s sessions: %s' % (self.name, r.stderr.strip()))
        return sum('state=established' in line for line in r.stdout.splitlines())

    def stats(self):
        r = subprocess.run([self.bins.psktunctl, '-s', self.sock, 'stats'],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise PhaseError('psktunctl %s stats: %s' % (self.name, r.stderr.strip()))
        return kv(r.stdout)


def identity(i):
    return 'meter-%05d' % i


def write_keys(path, n):
    with open(path, 'w') as f:
        for i in range(n):
            f.write('%s:%s\n' % (identity(i), os.urandom(16).hex()))
    os.chmod(path, 0o600)


def run_tool(argv, timeout, what):
    log('run %s' % ' '.join(argv))
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PhaseError('%s did not finish within %ds' % (what, timeout))
    out = kv(r.stdout)
    if r.returncode not in (0, 3) or not out:
        raise PhaseError('%s failed (%d): %s' % (what, r.returncode, r.stderr.strip()[-500:]))
    return out


def loadgen(bins, target, n, k=4, warmup=1.0, duration=3.0, loss_ms=200, once=False,
            deadline=60.0, rounds=1):
    argv = [bins.loadgen, '-t', '%s:%d' % (LO, target), '-a', METER_ADDR, '-b', str(METER_BASE),
            '-n', str(n), '-k', str(k), '-l', str(loss_ms)]
    if once:
        argv += ['-o', '-D', str(deadline), '-r', str(rounds)]
        timeout = deadline + 30
    else:
        argv += ['-w', str(warmup), '-d', str(duration)]
        timeout = warmup + duration + 30
    return run_tool(argv, int(timeout), 'loadgen')


def tunnel(world, bins, n, dtls, workers=1, tag=''):
    """echo <- terminator <- gateway; returns (gateway, terminator, accept port)."""
    echo_p, term_p, gw_p = free_port(), free_port(), free_port()
    echo = Proc(world, 'echo' + tag, [bins.udprelay, 'echo', '-l', '%s:%d' % (LO, echo_p)])
    echo.wait_ready()
    term = Daemon(world, bins, 'terminator' + tag, 'terminator', term_p, echo_p, n, dtls,
                  workers=workers)
    gw = Daemon(world, bins, 'gateway' + tag, 'gateway', gw_p, term_p, n, dtls)
    return gw, term, gw_p


def plain(world, bins):
    """echo <- relay2 <- relay1; returns (relay1, relay2, accept port)."""
    echo_p, r2_p, r1_p = free_port(), free_port(), free_port()
    echo = Proc(world, 'plain-echo', [bins.udprelay, 'echo', '-l', '%s:%d' % (LO, echo_p)])
    r2 = Proc(world, 'relay2', [bins.udprelay, 'relay', '-l', '%s:%d' % (LO, r2_p),
                                '-c', '%s:%d' % (LO, echo_p)])
    r1 = Proc(world, 'relay1', [bins.udprelay, 'relay', '-l', '%s:%d' % (LO, r1_p),
                                '-c', '%s:%d' % (LO, r2_p)])
    for p in (echo, r2, r1):
        p.wait_ready()
    return r1, r2, r1_p


# ----------------------------------------------------------------- phases

def phase_gnutls(ctx):
    runs = [run_tool([ctx.bins.hsmem, '-d', str(ctx.hsmem_s)], 60, 'hsmem')
            for _ in range(ctx.runs)]
    ctx.r['gnutls'] = {
        'handshake_rate': statistics.median(r['handshake_rate'] for r in runs),
        'record_rate': statistics.median(r['record_rate'] for r in runs),
        'handshake_bytes': runs[0]['handshake_bytes'],
        'handshake_datagrams': runs[0]['handshake_datagrams'],
        'record_overhead': runs[0]['record_overhead'],
    }


def phase_throughput(ctx):
    w = World(ctx.top, 'throughput')
    try:
        n, k = ctx.tp_meters, ctx.tp_inflight
        gw, term, gw_port = tunnel(w, ctx.bins, n, ctx.dtls(idle_timeout_s=600))
        r1, r2, r1_port = plain(w, ctx.bins)
        # Sessions and flows first, so the runs measure the steady state.
        for port in (gw_port, r1_port):
            lg = loadgen(ctx.bins, port, n, once=True, loss_ms=250, deadline=30)
            if lg['done'] != n:
                raise PhaseError('only %d of %d meters got through to port %d'
                                 % (lg['done'], n, port))
        res = {'tunnel': [], 'plain': []}
        for _ in range(ctx.runs):
            for kind, port, pids in (('plain', r1_port, (r1.pid, r2.pid)),
                                     ('tunnel', gw_port, (gw.pid, term.pid))):
                c0 = [cpu_s(p) for p in pids]
                lg = loadgen(ctx.bins, port, n, k, ctx.warmup_s, ctx.duration_s)
                c1 = [cpu_s(p) for p in pids]
                # CPU per round trip over the whole run (warm-up included).
                lg['cpu_us'] = [(b - a) * 1e6 / max(lg['echoed'], 1) for a, b in zip(c0, c1)]
                res[kind].append(lg)
                log('%s: %s' % (kind, lg))
        ctx.r['throughput'] = res
    finally:
        w.stop()


def phase_handshakes(ctx):
    w = World(ctx.top, 'handshakes')
    try:
        m = ctx.hs_meters
        idle = ctx.idle_s
        gw, term, gw_port = tunnel(w, ctx.bins, m, ctx.dtls(idle_timeout_s=idle))
        base = {d.name: rss_kib(d.pid) for d in (gw, term)}
        lg = loadgen(ctx.bins, gw_port, m, once=True, loss_ms=250, deadline=ctx.once_deadline)
        est = {d.name: (rss_kib(d.pid), dict(d.stats(), established=d.established()))
               for d in (gw, term)}
        out = {'m': m, 'first': lg, 'base': base, 'est': est}
        # Idle close: every established session times out; the meters stay resumable.
        # (Sessions stuck handshaking are not waited for: the table shows them.)
        out['idle_note'] = ''
        for d in (gw, term):
            try:
                wait_until(lambda d=d: d.established() == 0, idle + 30,
                           d.name + "'s sessions to close for idleness", interval=0.2)
            except PhaseError:
                # Late handshakes (retries) keep opening sessions: measure anyway.
                out['idle_note'] += ' %s: %d still established;' % (d.name, d.established())
        out['idle'] = {d.name: (rss_kib(d.pid), d.stats()) for d in (gw, term)}
        # The same meters again: resumed handshakes, if the daemons resume.
        lg2 = loadgen(ctx.bins, gw_port, m, once=True, loss_ms=250, deadline=ctx.once_deadline)
        out['again'] = lg2
        out['again_stats'] = {d.name: d.stats() for d in (gw, term)}
    finally:
        w.stop()
    # More bursts on fresh processes, alternated with the yardstick without
    # crypto: the same M new meters through the plain relays (each new flow gets
    # its own sockets there too), each doing 2 round trips one after the other:
    # 12 datagrams, as many as a handshake with the cookie exchange (6) and the
    # first echo (6) through gateway and terminator. Medians of ctx.runs each.
    out['bursts'], out['plain2'] = [lg], []
    for i in range(ctx.runs):
        if i:
            w = World(ctx.top, 'handshakes%d' % i)
            try:
                gw, term, gw_port = tunnel(w, ctx.bins, m, ctx.dtls(idle_timeout_s=600))
                out['bursts'].append(loadgen(ctx.bins, gw_port, m, once=True, loss_ms=250,
                                             deadline=ctx.once_deadline))
            finally:
                w.stop()
        w = World(ctx.top, 'handshakes-plain%d' % i)
        try:
            r1, r2, r1_port = plain(w, ctx.bins)
            out['plain2'].append(loadgen(ctx.bins, r1_port, m, once=True, loss_ms=250,
                                         deadline=ctx.once_deadline, rounds=2))
        finally:
            w.stop()
    ctx.r['handshakes'] = out


def phase_workers(ctx):
    """The terminator with workers = 1 and = 2, in the same run: the throughput load
    (medians of alternated runs) and M new meters at once, each on fresh processes."""
    n, k, m = ctx.tp_meters, ctx.tp_inflight, ctx.hs_meters
    res = {1: {'tp': [], 'hs': []}, 2: {'tp': [], 'hs': []}}
    for _ in range(ctx.runs):
        for wk in (1, 2):
            w = World(ctx.top, 'workers%d' % wk)
            try:
                gw, term, gw_port = tunnel(w, ctx.bins, max(n, m), ctx.dtls(idle_timeout_s=600),
                                           workers=wk)
                hs = loadgen(ctx.bins, gw_port, m, once=True, loss_ms=250,
                             deadline=ctx.once_deadline)
                res[wk]['hs'].append(hs)
                lg = loadgen(ctx.bins, gw_port, n, k, ctx.warmup_s, ctx.duration_s)
                res[wk]['tp'].append(lg)
                log('workers=%d: handshakes %s, throughput %s' % (wk, hs, lg))
            finally:
                w.stop()
    ctx.r['workers'] = res


def proxy_log_segments(text):
    """Split a udprelay -v log into handshakes and data, in order.
    Returns a list of ('hs', [(dir, len, tokens)]) and ('data', ...) segments."""
    segs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ('u', 'd'):
            continue
        d, n, toks = parts[0], int(parts[1]), parts[2:]
        kind = 'data' if 'a' in toks else 'alert' if toks == ['x'] else 'hs'
        if not segs or segs[-1][0] != kind:
            segs.append((kind, []))
        segs[-1][1].append((d, n, toks))
    return segs


def summarize_hs(dgrams):
    return {
        'bytes': sum(n for _, n, _ in dgrams),
        'datagrams': len(dgrams),
        'cookie': any('h3' in t for _, _, t in dgrams),
        'resumed': any('h2' in t for _, _, t in dgrams) and
        not any('h14' in t for _, _, t in dgrams),
        'cookie_bytes': sum(n for _, n, t in dgrams[:2]) if any('h3' in t for _, _, t in dgrams[:2]) else 0,
    }


def one_meter_round(port_meter, target, payload, timeout=15):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((METER_ADDR, port_meter))
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            s.sendto(payload, (LO, target))
            try:
                data = s.recv(2048)
                if data == payload:
                    return True
            except socket.timeout:
                continue
        return False
    finally:
        s.close()


def wire_run(ctx, w, server, dtls):  # noqa: ARG001 (server names the run)
    """gateway -> counting proxy -> server; one meter: echo, idle close, echo again."""
    gw_p, px_p = free_port(), free_port()
    size = 64
    echo_p, term_p = free_port(), free_port()
    Proc(w, 'echo', [ctx.bins.udprelay, 'echo', '-l', '%s:%d' % (LO, echo_p)]).wait_ready()
    Daemon(w, ctx.bins, 'terminator', 'terminator', term_p, echo_p, 1, dtls)
    pxlog = open(w.path('proxy.out'), 'w')
    px = Proc(w, 'proxy', [ctx.bins.udprelay, 'relay', '-v', '-l', '%s:%d' % (LO, px_p),
                           '-c', '%s:%d' % (LO, term_p)], stdout=pxlog)
    px.wait_ready()
    gw = Daemon(w, ctx.bins, 'gateway', 'gateway', gw_p, px_p, 1, dtls)
    payload = bytes(range(size))
    if not one_meter_round(METER_BASE, gw_p, payload):
        raise PhaseError('no echo through %s' % server)
    wait_until(lambda: gw.stats().get('sessions', 1) == 0, ctx.wire_idle_s + 30,
               "the gateway's session to close for idleness", interval=0.1)
    if not one_meter_round(METER_BASE, gw_p, payload):
        raise PhaseError('no second echo through %s' % server)
    with open(w.path('proxy.out')) as f:
        wait_until(lambda: f.seek(0) == 0 and f.read().count(' a') >= 4, 10,
                   'the proxy log to show both echoes')
        f.seek(0)
        segs = proxy_log_segments(f.read())
    hs = [summarize_hs(d) for kind, d in segs if kind == 'hs']
    data = [d for kind, d in segs if kind == 'data']
    up = [n for dd in data for (dr, n, t) in dd if dr == 'u' and t == ['a']]
    if len(hs) < 2 or not up:
        raise PhaseError('proxy log has %d handshakes and %d data records' % (len(hs), len(up)))
    return {'first': hs[0], 'second': hs[1], 'record': up[0], 'overhead': up[0] - size,
            'resumed_stat': gw.stats().get('handshakes_resumed')}


def udp_bound(port):
    with open('/proc/net/udp') as f:
        return any(line.split()[1].endswith(':%04X' % port) for line in list(f)[1:])


def phase_wire(ctx):
    dtls = ctx.dtls(idle_timeout_s=ctx.wire_idle_s)
    out = {}
    w = World(ctx.top, 'wire-psktund')
    try:
        out['psktund'] = wire_run(ctx, w, 'psktund', dtls)
    finally:
        w.stop()
    # No third-party server here: gnutls-serv, the one that can skip cookies,
    # only listens on every address, and these runs keep to 127.0.0.1. The
    # no-cookie full handshake is GnuTLS's own, measured in memory (hsmem).
    ctx.r['wire'] = out


def phase_scale(ctx):
    n = ctx.scale_meters
    w = World(ctx.top, 'scale')
    try:
        gw, term, gw_port = tunnel(w, ctx.bins, n, ctx.dtls(idle_timeout_s=600))
        base = {d.name: rss_kib(d.pid) for d in (gw, term)}
        lg = loadgen(ctx.bins, gw_port, n, once=True, loss_ms=250, deadline=2 * ctx.once_deadline)
        est = {d.name: (rss_kib(d.pid), dict(d.stats(), established=d.established()))
               for d in (gw, term)}
        tp = loadgen(ctx.bins, gw_port, n, 1, ctx.warmup_s, ctx.duration_s, loss_ms=500)
    finally:
        w.stop()
    # The plain relays need 2 x N ephemeral ports too: only once the daemons are gone.
    w = World(ctx.top, 'scale-plain')
    try:
        r1, r2, r1_port = plain(w, ctx.bins)
        lp = loadgen(ctx.bins, r1_port, n, once=True, loss_ms=250, deadline=ctx.once_deadline)
        if lp['done'] != n:
            raise PhaseError('plain relays: only %d of %d meters got through' % (lp['done'], n))
        pp = loadgen(ctx.bins, r1_port, n, 1, ctx.warmup_s, ctx.duration_s, loss_ms=500)
    finally:
        w.stop()
    ctx.r['scale'] = {'n': n, 'first': lg, 'base': base, 'est': est, 'tunnel': tp, 'plain': pp}


def udp_drops(port):
    """The kernel's drop count (/proc/net/udp) for the socket bound to 127.0.0.1:port."""
    want = '0100007F:%04X' % port
    with open('/proc/net/udp') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want:
                return int(fields[-1])
    return -1


def phase_burst(ctx):
    """After a power cut every meter reports at once: M meters each send one
    datagram at the same moment to a gateway with default settings, and never
    send it again (loadgen -o with a re-send time beyond its deadline)."""
    out = []
    for n, runs in ctx.burst_sizes:
        for i in range(runs):
            w = World(ctx.top, 'burst-%d-%d' % (n, i))
            try:
                # the gateway's defaults; the terminator's per-source handshake_rate
                # off: every gateway here is one source (127.0.0.1)
                gw, term, gw_port = tunnel(w, ctx.bins, n, {'max_sessions': max(n, 10000),
                                                             'handshake_rate': 0})
                lg = loadgen(ctx.bins, gw_port, n, once=True, loss_ms=1000 * (ctx.burst_deadline + 60),
                             deadline=ctx.burst_deadline)
                st = gw.stats()
                out.append({'n': n, 'done': lg['done'], 'elapsed_s': lg['elapsed_s'],
                            'p99_ms': lg['p99_ms'],
                            'dropped_kernel': st.get('dropped_kernel', -1),
                            'proc_drops': udp_drops(gw_port)})
                log('burst %d: %r' % (n, out[-1]))
            finally:
                w.stop()
    ctx.r['burst'] = out


# ----------------------------------------------------------------- profile

def callgrind_costs(path):
    """Self cost (Ir) per object and per (object, function) from a callgrind
    output file; call lines' inclusive costs are skipped so that each
    instruction counts once."""
    names = {'ob': {}, 'fn': {}}
    per_ob, per_fn = {}, {}
    ob = fn = None
    skip_next, npos = False, 1
    with open(path, errors='replace') as f:
        for line in f:
            if line.startswith('positions:'):
                npos = len(line.split()) - 1
                continue
            m = re.match(r'(c?)(ob|fn)=(?:\((\d+)\))?\s*(.*)', line.rstrip('\n'))
            if m:
                # "(id) name" defines a name, "(id)" refers to it; cob=/cfn= define too.
                kind, ident, name = m.group(2), m.group(3), m.group(4)
                if name and ident:
                    names[kind][ident] = name
                if not m.group(1):
                    val = names[kind].get(ident, name) if ident else name
                    if kind == 'ob':
                        ob = val
                    else:
                        fn = val
                continue
            if line.startswith('calls='):
                skip_next = True
                continue
            c = line[:1]
            if c.isdigit() or c in '+-*':
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) > npos:
                    ir = int(parts[npos])
                    per_ob[ob] = per_ob.get(ob, 0) + ir
                    per_fn[(ob, fn)] = per_fn.get((ob, fn), 0) + ir
    return per_ob, per_fn


def group_object(name):
    base = os.path.basename(name or '?')
    if base.startswith('psktund') or base.endswith('.so') and '/psktun' in (name or ''):
        return 'psktun'
    for pfx, grp in (('libgnutls', 'GnuTLS'), ('libnettle', 'GnuTLS'), ('libhogweed', 'GnuTLS'),
                     ('libgmp', 'GnuTLS deps'), ('libtasn1', 'GnuTLS deps'),
                     ('libp11-kit', 'GnuTLS deps'), ('libidn2', 'GnuTLS deps'),
                     ('libunistring', 'GnuTLS deps'), ('libuv', 'libuv'), ('libc.', 'libc'),
                     ('libc-', 'libc'), ('ld-linux', 'ld.so'), ('libconfig', 'libconfig')):
        if base.startswith(pfx):
            return grp
    return 'other (' + base + ')'


def profile_role(ctx, role, seconds):
    """Throughput load with `role` under callgrind, instrumented only while the load runs."""
    w = World(ctx.top, 'profile-' + role)
    try:
        n, k = ctx.tp_meters, ctx.tp_inflight
        dtls = ctx.dtls(idle_timeout_s=600)
        out = w.path('callgrind.out')
        echo_p, term_p, gw_p = free_port(), free_port(), free_port()
        Proc(w, 'echo', [ctx.bins.udprelay, 'echo', '-l', '%s:%d' % (LO, echo_p)]).wait_ready()
        vg = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--callgrind-out-file=' + out]
        ds = {}
        for name, mode, acc, conn in (('terminator', 'terminator', term_p, echo_p),
                                      ('gateway', 'gateway', gw_p, term_p)):
            pre = vg if name == role else None
            ds[name] = Daemon(w, ctx.bins, name, mode, acc, conn, n, dtls, prefix=pre)
        lg = loadgen(ctx.bins, gw_p, n, once=True, loss_ms=1000, deadline=30)
        if lg['done'] == 0:
            raise PhaseError('no meter got through')
        ready = lg['done']
        d = ds[role]
        # Native CPU split (user vs kernel) of the other daemon is not wanted here;
        # the profiled one runs under valgrind, so only instructions count.
        subprocess.run(['callgrind_control', '-i', 'on', str(d.pid)], check=True,
                       capture_output=True, timeout=60)
        s0 = d.stats()
        lg = loadgen(ctx.bins, gw_p, n, k, 0.5, seconds, loss_ms=2000)
        s1 = d.stats()
        subprocess.run(['callgrind_control', '-i', 'off', str(d.pid)], check=True,
                       capture_output=True, timeout=60)
        fwd = (s1['plain_in'] - s0['plain_in']) + (s1['plain_out'] - s0['plain_out'])
        w.stop()
        per, per_fn = callgrind_costs(out)
        groups = {}
        for ob, ir in per.items():
            g = group_object(ob)
            groups[g] = groups.get(g, 0) + ir
        return {'forwarded': fwd, 'groups': groups, 'total': sum(per.values()),
                'round_trips': lg['round_trips'], 'ready': ready, 'n': n,
                'top': sorted(per_fn.items(), key=lambda x: -x[1])[:12]}
    finally:
        w.stop()


def native_cpu_split(ctx, seconds):
    """user and kernel CPU us per forwarded datagram of each daemon, without valgrind."""
    w = World(ctx.top, 'profile-native')
    try:
        n, k = ctx.tp_meters, ctx.tp_inflight
        gw, term, gw_p = tunnel(w, ctx.bins, n, ctx.dtls(idle_timeout_s=600))
        loadgen(ctx.bins, gw_p, n, once=True, loss_ms=250, deadline=30)
        res = {}
        before = {d.name: (cpu_split(d.pid), d.stats()) for d in (gw, term)}
        loadgen(ctx.bins, gw_p, n, k, 0.5, seconds)
        for d in (gw, term):
            (u0, k0), s0 = before[d.name]
            u1, k1 = cpu_split(d.pid)
            s1 = d.stats()
            fwd = (s1['plain_in'] - s0['plain_in']) + (s1['plain_out'] - s0['plain_out'])
            res[d.name] = ((u1 - u0) * 1e6 / fwd, (k1 - k0) * 1e6 / fwd, fwd)
        return res
    finally:
        w.stop()


def cpu_split(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    hz = os.sysconf('SC_CLK_TCK')
    return int(fields[11]) / hz, int(fields[12]) / hz


def run_profile(ctx, roles, seconds):
    if not shutil.which('valgrind') or not shutil.which('callgrind_control'):
        print('profile: valgrind (callgrind) not installed')
        return 1
    print('psktun profile: callgrind instructions (Ir) per forwarded datagram '
          '(plain_in + plain_out of the profiled daemon; N=%d x K=%d, 64 B)' % (ctx.tp_meters, ctx.tp_inflight))
    for role in roles:
        r = profile_role(ctx, role, seconds)
        fwd = max(r['forwarded'], 1)
        print('\n%s: %d datagrams forwarded under callgrind (%d of %d meters had sessions), '
              '%d Ir in total, %.0f Ir / datagram'
              % (role, r['forwarded'], r['ready'], r['n'], r['total'], r['total'] / fwd))
        for g, ir in sorted(r['groups'].items(), key=lambda x: -x[1]):
            if ir * 1000 < r['total']:
                continue
            print('  %-28s %9.0f Ir / datagram  %5.1f%%' % (g, ir / fwd, 100.0 * ir / r['total']))
        print('  %-28s %9s (callgrind sees user space only; see the CPU split below)' % ('kernel', '?'))
        print('  top functions (self Ir / datagram):')
        for (ob, fn), ir in r['top']:
            print('    %7.0f  %-18s %s' % (ir / fwd, group_object(ob), fn))
    nat = native_cpu_split(ctx, seconds)
    print('\nwithout valgrind, CPU time per forwarded datagram (from /proc/PID/stat, 10 ms ticks):')
    for name, (u, k, fwd) in nat.items():
        print('  %-11s user %.2f us, kernel %.2f us  (kernel %.0f%% of the daemon\'s time; %d datagrams)'
              % (name, u, k, 100.0 * k / (u + k) if u + k else 0, fwd))
    return 0


# ----------------------------------------------------------------- table

def fmt_rate(x):
    return '{:,.0f}'.format(x)


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def build_table(ctx):
    rows = []       # (what, psktun, yardstick, ratio, target)

    def row(*cells):
        rows.append(tuple(str(c) for c in cells) + ('',) * (5 - len(cells)))

    def failed(phase):
        if phase in ctx.errors:
            row(phase + ': FAILED', ctx.errors[phase][:90])
            return True
        return phase not in ctx.r

    g = ctx.r.get('gnutls')
    tp = ctx.r.get('throughput')
    nr = ctx.runs
    if not failed('throughput'):
        t, p = tp['tunnel'], tp['plain']
        rt, rp = median_of(t, 'rate'), median_of(p, 'rate')
        row('round trips/s (N=%d x K=%d, 64 B, median of %d)' % (ctx.tp_meters, ctx.tp_inflight, nr),
            fmt_rate(rt), fmt_rate(rp) + ' plain', '%.2f' % (rt / rp if rp else 0), '>= 1.0')
        row('  latency p50 / p99 ms', '%.2f / %.2f' % (median_of(t, 'p50_ms'), median_of(t, 'p99_ms')),
            '%.2f / %.2f plain' % (median_of(p, 'p50_ms'), median_of(p, 'p99_ms')))
        row('  lost (re-armed) per run, median', '%d' % median_of(t, 'lost_window'),
            '%d plain' % median_of(p, 'lost_window'))
        cg = [statistics.median(r['cpu_us'][i] for r in t) for i in (0, 1)]
        cp = [statistics.median(r['cpu_us'][i] for r in p) for i in (0, 1)]
        row('  CPU us / round trip: gateway, terminator', '%.1f, %.1f' % tuple(cg),
            '%.1f, %.1f relay1, relay2' % tuple(cp), '%.2f' % (sum(cg) / sum(cp) if sum(cp) else 0))
        if g:
            row('  GnuTLS seal+open of a 64 B record, in memory', '',
                '%.2f us' % (1e6 / g['record_rate']))
    if failed('gnutls'):
        g = None
    hs = ctx.r.get('handshakes')
    if not failed('handshakes'):
        f = hs['first']
        rate, p2 = median_of(hs['bursts'], 'rate'), median_of(hs['plain2'], 'rate')
        row('handshakes/s end to end (M=%d at once, median of %d)' % (hs['m'], len(hs['bursts'])),
            fmt_rate(rate), (fmt_rate(g['handshake_rate']) + ' GnuTLS mem') if g else '-',
            '%.3f' % (rate / g['handshake_rate']) if g else '', '>= 0.5')
        row('  the same datagrams, no crypto: plain relays, 2 round trips a new meter',
            fmt_rate(p2), '%s through' % ', '.join('%d/%d' % (r['done'], hs['m']) for r in hs['plain2']),
            '%.3f' % (rate / p2 if p2 else 0))
        if g:
            row('  ... that plain rate against GnuTLS in memory', '', '', '%.3f' % (
                p2 / g['handshake_rate']))
        gst = hs['est']['gateway'][1]
        row('  meters through / first-echo p50, p99 ms (first burst)', '%d/%d  %.0f, %.0f' % (
            f['done'], hs['m'], f['p50_ms'], f['p99_ms']),
            'gateway handshakes failed: %d' % gst.get('handshakes_failed', 0))
        a = hs['again']
        resumed = hs['again_stats']['gateway'].get('handshakes_resumed', 0)
        row('  same meters after idle close (resumed: %s)' % resumed, fmt_rate(a['rate']),
            '', '%.3f' % (a['rate'] / g['handshake_rate']) if g else '')
        for name in ('gateway', 'terminator'):
            rss, st = hs['est'][name]
            n = st.get('sessions', 0)      # each holds its GnuTLS state, up or not
            per = (rss - hs['base'][name]) * 1024 / n if n else 0
            row('memory / established session, %s' % name, '%.1f KiB' % (per / 1024),
                '(%d sessions, %d up, RSS %d->%d KiB)' % (n, st['established'], hs['base'][name], rss),
                '', '<= 20 KiB')
        for name in ('gateway', 'terminator'):
            rss, st = hs['idle'][name]
            n = st.get('resumable', 0)
            per = st.get('resumable_bytes', 0) / n if n else 0
            row('memory / idle resumable meter, %s' % name, '%.0f B' % per,
                '(%d resumable, held exactly; RSS %d KiB is an upper bound: %.0f B)'
                % (n, rss, (rss - hs['base'][name]) * 1024 / hs['m']), '', '<= 512 B')
        if hs.get('idle_note'):
            row('  idle close incomplete:', hs['idle_note'].strip())
    wi = ctx.r.get('wire')
    if not failed('wire'):
        ps = wi['psktund']
        row('record overhead, bytes / datagram (64 B in)', ps['overhead'],
            '%s GnuTLS mem' % g['record_overhead'] if g else '', '', 'min 29')
        if g:
            row('full handshake, no cookie (GnuTLS in memory)',
                '%d B / %d dg' % (g['handshake_bytes'], g['handshake_datagrams']), '')
        h = ps['first']
        row('full handshake, cookie (-> psktund)', '%d B / %d dg' % (h['bytes'], h['datagrams']),
            'cookie exchange %d B / 2 dg' % h['cookie_bytes'] if h['cookie'] else 'no cookie seen')
        for name, r in (('psktund', ps),):
            h = r['second']
            row('after idle close (-> %s): %s' % (name, 'RESUMED' if h['resumed'] else 'full, not resumed'),
                '%d B / %d dg' % (h['bytes'], h['datagrams']),
                'with cookie' if h['cookie'] else 'no cookie')
    wk = ctx.r.get('workers')
    if not failed('workers'):
        t1, t2 = median_of(wk[1]['tp'], 'rate'), median_of(wk[2]['tp'], 'rate')
        h1, h2 = median_of(wk[1]['hs'], 'rate'), median_of(wk[2]['hs'], 'rate')
        row('terminator workers 2 vs 1: round trips/s (N=%d x K=%d)' % (ctx.tp_meters, ctx.tp_inflight),
            fmt_rate(t2), fmt_rate(t1) + ' workers=1', '%.2f' % (t2 / t1 if t1 else 0),
            '%d CPUs in all' % os.cpu_count())
        row('terminator workers 2 vs 1: handshakes/s (M=%d)' % ctx.hs_meters,
            fmt_rate(h2), fmt_rate(h1) + ' workers=1', '%.2f' % (h2 / h1 if h1 else 0))
    sc = ctx.r.get('scale')
    if not failed('scale'):
        n = sc['n']
        f = sc['first']
        st = sc['est']['gateway'][1]
        row('scale: meters through, sessions (gateway, terminator)', '%d/%d: %d, %d' % (
            f['done'], n, st.get('sessions', 0), sc['est']['terminator'][1].get('sessions', 0)),
            'gateway handshakes failed: %d' % st.get('handshakes_failed', 0))
        row('scale: handshakes/s (M=%d at once)' % n, fmt_rate(f['rate']),
            (fmt_rate(g['handshake_rate']) + ' GnuTLS mem') if g else '',
            '%.3f' % (f['rate'] / g['handshake_rate']) if g else '')
        for name in ('gateway', 'terminator'):
            rss, s2 = sc['est'][name]
            k = s2.get('sessions', 0)
            row('scale: memory / session, %s' % name,
                '%.1f KiB' % ((rss - sc['base'][name]) / k if k else 0), '(RSS %d KiB)' % rss)
        t, p = sc['tunnel'], sc['plain']
        row('scale: round trips/s (N=%d x K=1)' % n, fmt_rate(t['rate']), fmt_rate(p['rate']) + ' plain',
            '%.2f' % (t['rate'] / p['rate'] if p['rate'] else 0))
        row('  latency p50 / p99 ms; lost', '%.2f / %.2f; %d' % (t['p50_ms'], t['p99_ms'], t['lost_window']),
            '%.2f / %.2f; %d plain' % (p['p50_ms'], p['p99_ms'], p['lost_window']))
    if not failed('burst'):
        for b in ctx.r['burst']:
            row('burst: M=%d at once, first datagrams answered' % b['n'],
                '%d/%d in %.1f s' % (b['done'], b['n'], b['elapsed_s']),
                'kernel drops %d (dropped_kernel %d)' % (b['proc_drops'], b['dropped_kernel']),
                '', 'all, or every loss counted')
    uring_phases.rows(ctx, row, failed)
    fleet.table(ctx, row, failed)
    return rows


def print_table(ctx, rows):
    head = ('what', 'psktun', 'yardstick', 'ratio', 'target')
    wd = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    sep = '  '
    print('psktun bench%s: %s, %d CPUs, GnuTLS %s, %s' % (
        ' (QUICK smoke run: numbers mean nothing)' if ctx.quick else '',
        time.strftime('%Y-%m-%d %H:%M'), os.cpu_count(), gnutls_version(), ctx.dtls_desc))
    print(sep.join(h.ljust(wd[i]) for i, h in enumerate(head)).rstrip())
    print(sep.join('-' * wd[i] for i in range(5)))
    for r in rows:
        print(sep.join(c.ljust(wd[i]) for i, c in enumerate(r)).rstrip())
    sys.stdout.flush()


def gnutls_version():
    try:
        r = subprocess.run(['pkg-config', '--modversion', 'gnutls'], capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip() or '?'
    except (OSError, subprocess.TimeoutExpired):
        return '?'


# ----------------------------------------------------------------- main

class Ctx:
    def __init__(self, args, top):
        self.quick = args.quick
        self.top = top
        self.bins = Bins()
        self.r = {}
        self.errors = {}
        self.runs = args.runs or (1 if args.quick else 3)
        q = args.quick
        self.hsmem_s = 0.3 if q else 2.0
        self.tp_meters, self.tp_inflight = (20, 4) if q else (100, 4)
        self.warmup_s, self.duration_s = (0.3, 1.0) if q else (1.0, 5.0)
        self.hs_meters = 200 if q else 2000
        self.once_deadline = 5 if q else 10     # for M meters to get their first echo
        # Idle close only after the deadline, so RSS is sampled with every session up.
        self.idle_s = self.once_deadline + 2
        self.wire_idle_s = 1
        self.scale_meters = 1000 if q else 10000
        self.burst_sizes = ((300, 1),) if q else ((3000, self.runs), (10000, 1))
        self.burst_deadline = 10 if q else 40
        # handshake_rate 0: every gateway here is one source (127.0.0.1), and the
        # handshake phases measure throughput, not the per-source limit.
        self.base_dtls = {'retransmit_ms': 1000, 'handshake_timeout_s': 5, 'max_sessions': 20000,
                          'handshake_rate': 0}
        self.dtls_desc = ('dtls: default priority, retransmit_ms=1000, handshake_timeout_s=5, '
                          'max_sessions=20000, handshake_rate=0, others default')

    def dtls(self, **kw):
        d = dict(self.base_dtls)
        d.update(kw)
        return d


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description='psktun loopback benchmark')
    ap.add_argument('--quick', action='store_true', help='smoke run (CI)')
    ap.add_argument('--runs', type=int, default=0)
    ap.add_argument('--keep', action='store_true')
    ap.add_argument('--only', default='', help='comma-separated phases')
    ap.add_argument('--profile', default='', help='gateway,terminator: callgrind instead of the table')
    ap.add_argument('--seconds', type=float, default=10, help='--profile: load duration')
    ap.add_argument('-v', action='store_true')
    args = ap.parse_args()
    VERBOSE = args.v
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Each session owns a socket in each daemon; children inherit the limit.
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    top = tempfile.mkdtemp(prefix='psktun-bench-')
    ctx = Ctx(args, top)
    if ctx.scale_meters + 200 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        ctx.scale_meters = max(100, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 500)
    if args.profile:
        try:
            return run_profile(ctx, args.profile.split(','), args.seconds)
        finally:
            if not args.keep:
                shutil.rmtree(top, ignore_errors=True)
    phases = [('gnutls', phase_gnutls), ('throughput', phase_throughput),
              ('handshakes', phase_handshakes), ('wire', phase_wire), ('workers', phase_workers),
              ('scale', phase_scale), ('burst', phase_burst)] + fleet.phases(sys.modules[__name__]) + \
        uring_phases.PHASES
    only = set(filter(None, args.only.split(',')))
    try:
        for name, fn in phases:
            if only and name not in only:
                continue
            log('phase %s' % name)
            t = time.monotonic()
            try:
                fn(ctx)
            except (PhaseError, OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
                ctx.errors[name] = '%s: %s' % (type(e).__name__, e)
                print('bench: phase %s failed: %s' % (name, e), file=sys.stderr)
            log('phase %s took %.1fs' % (name, time.monotonic() - t))
    finally:
        if args.keep:
            print('bench: work directory kept: %s' % top, file=sys.stderr)
        else:
            shutil.rmtree(top, ignore_errors=True)
    print_table(ctx, build_table(ctx))
    return 1 if ctx.errors else 0


import uring_phases  # noqa: E402 (io_uring against system calls; it uses the helpers above)

if __name__ == '__main__':
    sys.exit(main())

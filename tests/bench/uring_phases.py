"""uring_phases: the io_uring data path against the system-call one (PSKTUN_IO_URING=0),
in the same bench run (issue 15). bench.py registers the phases and prints the rows.

  uring        the throughput load (N x K) alternated through: the tunnel on io_uring,
               the tunnel on system calls, the plain relays; per daemon CPU us and
               system calls (perf stat raw_syscalls:sys_enter, when perf runs) per
               forwarded datagram (plain_in + plain_out); then M new meters at once
               on each path, alternated with the plain relays' 2 round trips a new
               meter (the same datagrams without crypto). Medians of ctx.runs.
  uring_scale  phase_scale (10,000 meters) on each path.
  uring_burst  phase_burst (3,000 and 10,000 meters at once) on each path.
"""

import contextlib
import os
import shutil
import statistics
import subprocess
import sys

import __main__
if hasattr(__main__, 'phase_scale'):      # run as bench.py: its own module, its PhaseError
    bench = __main__
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench  # noqa: E402

PATHS = (('io_uring', None), ('syscalls', '0'))


@contextlib.contextmanager
def io_path(setting):
    """Daemons started inside inherit PSKTUN_IO_URING=setting (None: unset)."""
    saved = os.environ.get('PSKTUN_IO_URING')
    if setting is None:
        os.environ.pop('PSKTUN_IO_URING', None)
    else:
        os.environ['PSKTUN_IO_URING'] = setting
    try:
        yield
    finally:
        os.environ.pop('PSKTUN_IO_URING', None)
        if saved is not None:
            os.environ['PSKTUN_IO_URING'] = saved


def perf_usable():
    return shutil.which('perf') is not None and os.geteuid() == 0


def count_syscalls(pids, seconds, world):
    """perf stat of each pid's system calls over `seconds`: [(Popen, path)]."""
    out = []
    for p in pids:
        path = world.path('syscalls-%d.txt' % p)
        out.append((subprocess.Popen(['perf', 'stat', '-x', ',', '-e', 'raw_syscalls:sys_enter',
                                      '-p', str(p), '-o', path, '--', 'sleep', str(seconds)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path))
    return out


def syscalls_counted(proc, path):
    proc.wait(60)
    try:
        with open(path) as f:
            for line in f:
                fields = line.split(',')
                if len(fields) > 2 and 'sys_enter' in line and fields[0].strip().isdigit():
                    return int(fields[0])
    except OSError:
        pass
    return None


def forwarded(st):
    return st['plain_in'] + st['plain_out']


def tunnel_run(ctx, w, d_pair, port):
    """One throughput window on a tunnel: the loadgen result, plus per daemon CPU us
    and system calls per forwarded datagram."""
    n, k = ctx.tp_meters, ctx.tp_inflight
    s0 = [d.stats() for d in d_pair]
    c0 = [bench.cpu_s(d.pid) for d in d_pair]
    sc = count_syscalls([d.pid for d in d_pair], ctx.warmup_s + ctx.duration_s, w) \
        if perf_usable() else None
    lg = bench.loadgen(ctx.bins, port, n, k, ctx.warmup_s, ctx.duration_s)
    c1 = [bench.cpu_s(d.pid) for d in d_pair]
    calls = [syscalls_counted(p, path) for p, path in sc] if sc else [None, None]
    s1 = [d.stats() for d in d_pair]
    fw = [max(forwarded(b) - forwarded(a), 1) for a, b in zip(s0, s1)]
    lg['cpu_us_dgram'] = [(b - a) * 1e6 / f for a, b, f in zip(c0, c1, fw)]
    # perf stat's window starts with loadgen and lasts as long: calls / datagrams
    # of the same span (give or take the handful loadgen's start takes)
    lg['calls_dgram'] = [c / f if c is not None else None for c, f in zip(calls, fw)]
    lg['io_uring'] = [s1[i].get('io_uring', 0) for i in (0, 1)]
    return lg


def phase_uring(ctx):
    n, m = ctx.tp_meters, ctx.hs_meters
    res = {'tp': {'io_uring': [], 'syscalls': [], 'plain': []},
           'hs': {'io_uring': [], 'syscalls': [], 'plain': []}}
    w = bench.World(ctx.top, 'uring-tp')
    try:
        tunnels = {}
        for path, setting in PATHS:
            with io_path(setting):
                gw, term, port = bench.tunnel(w, ctx.bins, n, ctx.dtls(idle_timeout_s=600), tag='-' + path)
            tunnels[path] = (gw, term, port)
        r1, r2, r1_port = bench.plain(w, ctx.bins)
        for port in [t[2] for t in tunnels.values()] + [r1_port]:
            lg = bench.loadgen(ctx.bins, port, n, once=True, loss_ms=250, deadline=30)
            if lg['done'] != n:
                raise bench.PhaseError('only %d of %d meters got through to port %d' % (lg['done'], n, port))
        for _ in range(ctx.runs):
            c0 = [bench.cpu_s(p) for p in (r1.pid, r2.pid)]
            lg = bench.loadgen(ctx.bins, r1_port, n, ctx.tp_inflight, ctx.warmup_s, ctx.duration_s)
            c1 = [bench.cpu_s(p) for p in (r1.pid, r2.pid)]
            # a relay forwards each round trip's 2 datagrams
            lg['cpu_us_dgram'] = [(b - a) * 1e6 / max(2 * lg['echoed'], 1) for a, b in zip(c0, c1)]
            res['tp']['plain'].append(lg)
            for path, _ in PATHS:
                gw, term, port = tunnels[path]
                res['tp'][path].append(tunnel_run(ctx, w, (gw, term), port))
                bench.log('uring %s: %s' % (path, res['tp'][path][-1]))
    finally:
        w.stop()
    # M new meters at once, each path on fresh processes, alternated with the
    # plain relays' 2 round trips a new meter (12 datagrams, as a handshake
    # with the cookie exchange and the first echo through both daemons).
    for i in range(ctx.runs):
        for path, setting in PATHS:
            w = bench.World(ctx.top, 'uring-hs-%s-%d' % (path, i))
            try:
                with io_path(setting):
                    gw, term, port = bench.tunnel(w, ctx.bins, m, ctx.dtls(idle_timeout_s=600))
                res['hs'][path].append(bench.loadgen(ctx.bins, port, m, once=True, loss_ms=250,
                                                     deadline=ctx.once_deadline))
            finally:
                w.stop()
        w = bench.World(ctx.top, 'uring-hs-plain-%d' % i)
        try:
            r1, r2, r1_port = bench.plain(w, ctx.bins)
            res['hs']['plain'].append(bench.loadgen(ctx.bins, r1_port, m, once=True, loss_ms=250,
                                                    deadline=ctx.once_deadline, rounds=2))
        finally:
            w.stop()
    ctx.r['uring'] = res


def per_path(ctx, phase, key):
    """Runs bench's phase once per path; ctx.r[key] becomes {path: its result}."""
    out = {}
    for path, setting in PATHS:
        with io_path(setting):
            phase(ctx)
        out[path] = ctx.r.pop(key)
    ctx.r['uring_' + key] = out


def phase_uring_scale(ctx):
    per_path(ctx, bench.phase_scale, 'scale')


def phase_uring_burst(ctx):
    per_path(ctx, bench.phase_burst, 'burst')


PHASES = [('uring', phase_uring), ('uring_scale', phase_uring_scale), ('uring_burst', phase_uring_burst)]


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _pair(runs, key):
    """Median over runs of a [gateway, terminator] pair."""
    return [_med([r[key][i] for r in runs]) for i in (0, 1)]


def _fmt_pair(p, f='%.2f'):
    return ', '.join('-' if x is None else f % x for x in p)


def rows(ctx, row, failed):
    """The table's lines: row(what, psktun, yardstick, ratio, target)."""
    fmt = bench.fmt_rate
    if not failed('uring'):
        tp, hs = ctx.r['uring']['tp'], ctx.r['uring']['hs']
        rp = bench.median_of(tp['plain'], 'rate')
        rt = {p: bench.median_of(tp[p], 'rate') for p, _ in PATHS}
        io = tp['io_uring'][0]['io_uring'] if tp['io_uring'] else [0, 0]
        row('io_uring: round trips/s (N=%d x K=%d, median of %d; io_uring=%d,%d)'
            % (ctx.tp_meters, ctx.tp_inflight, len(tp['plain']), io[0], io[1]),
            fmt(rt['io_uring']), fmt(rp) + ' plain', '%.2f' % (rt['io_uring'] / rp if rp else 0), '>= 1.0')
        row('  the same, system calls (PSKTUN_IO_URING=0)', fmt(rt['syscalls']), fmt(rp) + ' plain',
            '%.2f' % (rt['syscalls'] / rp if rp else 0))
        row('  io_uring against system calls', '', '', '%.2f' % (
            rt['io_uring'] / rt['syscalls'] if rt['syscalls'] else 0))
        for p, _ in PATHS:
            row('  %s: CPU us / forwarded datagram, gateway, terminator' % p,
                _fmt_pair(_pair(tp[p], 'cpu_us_dgram')),
                _fmt_pair(_pair(tp['plain'], 'cpu_us_dgram')) + ' relay1, relay2')
        for p, _ in PATHS:
            row('  %s: system calls / forwarded datagram, gateway, terminator' % p,
                _fmt_pair(_pair(tp[p], 'calls_dgram')),
                '' if perf_usable() else 'perf stat needs perf and root')
        hp = bench.median_of(hs['plain'], 'rate')
        for p, _ in PATHS:
            h = bench.median_of(hs[p], 'rate')
            row('io_uring: handshakes/s, %s (M=%d at once, median of %d)' % (p, ctx.hs_meters, len(hs[p])),
                fmt(h), fmt(hp) + ' plain, no crypto', '%.2f' % (h / hp if hp else 0), '>= 0.8')
    if not failed('uring_scale'):
        for p, _ in PATHS:
            sc = ctx.r['uring_scale'][p]
            t, pl = sc['tunnel'], sc['plain']
            row('scale %s: round trips/s (N=%d x K=1)' % (p, sc['n']), fmt(t['rate']),
                fmt(pl['rate']) + ' plain', '%.2f' % (t['rate'] / pl['rate'] if pl['rate'] else 0))
            mem = []
            for name in ('gateway', 'terminator'):
                rss, s2 = sc['est'][name]
                k = s2.get('sessions', 0)
                mem.append((rss - sc['base'][name]) / k if k else 0)
            row('scale %s: memory / session, gateway, terminator' % p, '%.1f, %.1f KiB' % tuple(mem),
                'meters through %d/%d' % (sc['first']['done'], sc['n']))
    if not failed('uring_burst'):
        for p, _ in PATHS:
            for b in ctx.r['uring_burst'][p]:
                row('burst %s: M=%d at once, first datagrams answered' % (p, b['n']),
                    '%d/%d in %.1f s' % (b['done'], b['n'], b['elapsed_s']),
                    'kernel drops %d (dropped_kernel %d)' % (b['proc_drops'], b['dropped_kernel']),
                    '', 'all, or every loss counted')

"""fleet: the figures issue 14 asks of `make bench` (tests/bench/README, the fleet lines).

Phases, registered by bench.py (each on fresh processes, 127.0.0.0/8 only):
  fleet-cache   a terminator with the Redis session cache (a real redis-server)
                against the same terminator with its local cache only: M meters'
                full handshakes at once, then, after every session closed for
                idleness and the terminator restarted, the same M resumed (from
                Redis; from the local cache kept in state_file); medians of
                alternated runs. Redis memory per resumable meter (INFO memory).
  fleet-kill    nginx stream + three terminators sharing Redis + a gateway with N
                meters (test_fleet.py's fleet): kill -9 of the node holding a third
                of the sessions, then every meter asks once: full handshakes, seconds
                until every meter is answered, air bytes per recovered meter against
                a full handshake's.
  fleet-reload  a meter's round-trip p99 and longest round trip while the terminator
                reloads 1,000,000 keys, and without a reload, in the same run.

The parts are started the way the integration tests start them (harness.py,
resil.py, test_session_cache.Redis, test_fleet.Nginx and Fleet). A phase whose
parts are missing (redis-server, nginx's stream module, a psktund built
without hiredis) is skipped: its line says why, and the run does not fail.
No timing is asserted; ratios come from the same run.
"""

import os
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import harness as h  # noqa: E402
import resil  # noqa: E402
import test_fleet  # noqa: E402
from test_session_cache import Redis, _terminator, need_hiredis  # noqa: E402

B = None            # the bench module (bench.py), set by phases()


class Skipped(Exception):
    pass


def _world(name, fn):
    """Runs fn(env) in a harness world of its own; harness.Skip becomes Skipped."""
    env = h.Env(name)
    try:
        return fn(env)
    except h.Skip as e:
        raise Skipped(str(e))
    except h.Fail as e:
        raise B.PhaseError(str(e))
    finally:
        env.close()


def _run_phase(ctx, name, fn):
    try:
        ctx.r[name] = fn(ctx)
    except Skipped as e:
        ctx.r[name] = {'skipped': str(e)}


def _echo(ctx, env):
    """udprelay echo (4 MiB receive buffer): never the one that drops."""
    port = h.free_udp_port()
    p = env.peer('echo', [ctx.bins.udprelay, 'echo', '-l', '%s:%d' % (h.LO, port)], stdin=False)
    p.wait_err('ready')
    p.addr = '%s:%d' % (h.LO, port)
    return p


def _bench_meters(m):
    """The keys and the gateway's meters list of loadgen's M meters."""
    keys = {B.identity(i): os.urandom(16) for i in range(m)}
    return keys, [(B.identity(i), '%s:%d' % (B.METER_ADDR, B.METER_BASE + i)) for i in range(m)]


def _redis_used(redis):
    info = dict(line.split(b':', 1) for line in redis.cmd('INFO', 'memory').split(b'\r\n') if b':' in line)
    return int(info[b'used_memory'])


# ----------------------------------------------------------------- fleet-cache

def _cache_run(ctx, env, shared):
    m = ctx.fleet_meters
    keys, meters = _bench_meters(m)
    echo = _echo(ctx, env)
    dtls = ctx.dtls(idle_timeout_s=ctx.fleet_idle_s)
    if shared:
        need_hiredis(env)
        redis = Redis(env).start()
        term = _terminator(env, 'terminator', keys, echo, redis, os.urandom(32), dtls=dtls)
        h.wait_until(lambda: term.stats().get('cache_up') == 1, h.T, 'terminator: cache_up=1')
        used0 = _redis_used(redis)
    else:
        term = h.terminator(env, keys, echo.addr, dtls=dtls, extra='state_file = "state";')
    gw = h.gateway(env, keys, meters, term.addr, dtls=dtls)
    full = B.loadgen(ctx.bins, gw.port, m, once=True, loss_ms=250, deadline=ctx.once_deadline)
    out = {'full': full}
    if shared:
        h.wait_until(lambda: term.stats()['cache_stores'] >= full['done'], h.T, 'every session in Redis')
        out['redis_keys'] = redis.cmd('DBSIZE')
        out['redis_bytes'] = _redis_used(redis) - used0
    # every session closes for idleness; the gateway keeps each meter's resumption data
    for d in (gw, term):
        h.wait_until(lambda d=d: d.stats()['sessions'] == 0, ctx.fleet_idle_s + 30,
                     "%s's sessions to close for idleness" % d.name, interval=0.1)
    # a fresh terminator: its local cache from state_file, or empty and Redis full
    resil.graceful_stop(term)
    resil.restart(term)
    if shared:
        h.wait_until(lambda: term.stats().get('cache_up') == 1, h.T, 'terminator: cache_up=1 again')
    g0 = gw.stats()
    out['resumed'] = B.loadgen(ctx.bins, gw.port, m, once=True, loss_ms=250, deadline=ctx.once_deadline)
    g1, t1 = gw.stats(), term.stats()
    out['resumed_n'] = g1['handshakes_resumed'] - g0['handshakes_resumed']
    out['cache'] = {k: t1[k] for k in t1 if k.startswith('cache_')}
    B.log('fleet-cache %s: %r' % ('redis' if shared else 'local', out))
    return out


def phase_fleet_cache(ctx):
    res = {'local': [], 'redis': []}
    for i in range(ctx.runs):
        for kind in ('local', 'redis'):
            res[kind].append(_world('bench-cache-%s%d' % (kind, i),
                                    lambda env, kind=kind: _cache_run(ctx, env, kind == 'redis')))
    return res


# ----------------------------------------------------------------- fleet-kill

class _CountedNat:
    """test_fleet's carrier NAT (BadLink) with resil's DatagramCounter in front of it,
    between the gateway and nginx: every datagram on the air, with its records."""

    BadLink = test_fleet.BadLink

    def __init__(self, upstream, **kw):
        self.link = self.BadLink(upstream=upstream, **kw)
        self.counter = resil.DatagramCounter(self.link.listen_addr)
        self.listen_addr = (h.LO, self.counter.port)

    def rebind(self):
        return self.link.rebind()

    def stop(self):
        self.counter.close()
        self.link.stop()


def _air_split(entries):
    """Bytes of a slice of DatagramCounter.log: handshakes, alerts, application data."""
    hs = resil.handshake_cost(entries)['bytes']
    alerts = sum(e[2] for e in entries if e[3] and all(r[0] == resil.CT_ALERT for r in e[3]))
    return hs, alerts, sum(e[2] for e in entries) - hs - alerts


def _kill_run(ctx, env):
    n = ctx.fleet_kill_meters
    test_fleet.BadLink = _CountedNat
    try:
        f = test_fleet.Fleet(env, n)    # each meter: one full handshake and one request
    finally:
        test_fleet.BadLink = _CountedNat.BadLink
    air = f.nat.counter
    warm = _air_split(air.since(0))
    victim = f.nodes[1]
    held = {s['identity'] for s in victim.sessions() if s.get('state') == 'established'}
    g0, full0, mark = f.gw.stats(), f.full(), air.mark()
    os.killpg(victim.proc.pid, signal.SIGKILL)
    t_kill = time.monotonic()
    resil._reap(victim)
    victim.rc = victim.proc.returncode     # killed on purpose
    # each meter asks once, again every EVERY s until answered (test_fleet's meters)
    stop, threads, errors = f.traffic(b'after-kill', n_requests=1)
    resil.join_all(threads, errors, test_fleet.EVERY * test_fleet.TRIES + 10)
    resil.check_all_answered(f.meters)
    last = max(r['t_answer'] for m in f.meters for r in m.results)
    g1 = f.gw.stats()
    hs, alerts, data = _air_split(air.since(mark))
    resumed = g1['handshakes_resumed'] - g0['handshakes_resumed']
    return {'n': n, 'held': len(held), 'full': f.full() - full0, 'seconds': last - t_kill,
            'resumed': resumed, 'replayed': g1['replayed'] - g0['replayed'],
            'resent': sum(r['tries'] - 1 for m in f.meters for r in m.results),
            'recovered_hs': hs / resumed if resumed else 0, 'recovered_alerts': alerts / resumed if resumed else 0,
            'full_hs': warm[0] / n}


def phase_fleet_kill(ctx):
    return _world('bench-kill', lambda env: _kill_run(ctx, env))


# ----------------------------------------------------------------- fleet-reload

def _write_keys(path, first, n):
    """first (identity -> key), then n - len(first) generated identities."""
    with open(path, 'w') as f:
        for k, v in first.items():
            f.write('%s:%s\n' % (k, v.hex()))
        left = n - len(first)
        raw = os.urandom(16 * left).hex()
        for base in range(0, left, 100000):
            f.write(''.join('k%07d:%s\n' % (i, raw[32 * i:32 * i + 32]) for i in range(base, min(base + 100000, left))))
    os.chmod(path, 0o600)


def _reload_run(ctx, env):
    m = ctx.fleet_reload_meters
    keys, meters = _bench_meters(m)
    echo = _echo(ctx, env)
    dtls = ctx.dtls(idle_timeout_s=600)
    term = h.Daemon(env, 'terminator', 'terminator',
                    [dict(name='t1', accept='%s:%d' % (h.LO, h.free_udp_port()), connect=echo.addr)], keys,
                    dtls=dtls, verbose=0)
    _write_keys(term.keyfile, keys, ctx.fleet_reload_keys)
    env.defer(term.stop)
    term.start(timeout=300)
    port = int(term.tunnels[0]['accept'].rsplit(':', 1)[1])
    gw = h.gateway(env, keys, meters, '%s:%d' % (h.LO, port), dtls=dtls)
    lg = B.loadgen(ctx.bins, gw.port, m, once=True, loss_ms=250, deadline=30)
    if lg['done'] != m:
        raise B.PhaseError('only %d of %d meters got through' % (lg['done'], m))
    # a first reload, unmeasured, says how long one takes: the window is twice that
    t0 = time.monotonic()
    if term.reload(timeout=300) != 'configuration reloaded':
        raise B.PhaseError('the first reload failed')
    duration = 2 * (time.monotonic() - t0) + 2
    out = {'keys': ctx.fleet_reload_keys, 'meters': m}
    out['quiet'] = B.loadgen(ctx.bins, gw.port, m, 1, 0.3, duration, loss_ms=1000)
    # the same load, with SIGHUP half a second into its window
    got = {}
    t_start = time.monotonic()
    th = threading.Thread(target=lambda: got.update(B.loadgen(ctx.bins, gw.port, m, 1, 0.3, duration,
                                                              loss_ms=1000)))
    th.start()
    time.sleep(0.3 + 0.5)       # into the window: the load's own schedule
    mark = term.log_mark()
    t_hup = time.monotonic()
    term.proc.send_signal(signal.SIGHUP)
    outcome = term.wait_log(r'configuration reloaded|reload failed', 300, mark).group(0)
    out['reload_s'] = time.monotonic() - t_hup
    th.join(duration + 60)
    if outcome != b'configuration reloaded' or not got:
        raise B.PhaseError('the reload failed' if got else 'loadgen failed during the reload')
    out['reload'] = got
    out['fits'] = t_hup + out['reload_s'] < t_start + 0.3 + duration
    return out


def phase_fleet_reload(ctx):
    return _world('bench-reload', lambda env: _reload_run(ctx, env))


# ----------------------------------------------------------------- bench.py's hooks

def phases(bench):
    """(name, fn) for bench.py's list; sets the sizes on its Ctx."""
    global B
    B = bench
    return [('fleet-cache', lambda ctx: _run_phase(ctx, 'fleet-cache', _sized(phase_fleet_cache))),
            ('fleet-kill', lambda ctx: _run_phase(ctx, 'fleet-kill', _sized(phase_fleet_kill))),
            ('fleet-reload', lambda ctx: _run_phase(ctx, 'fleet-reload', _sized(phase_fleet_reload)))]


def _sized(fn):
    def run(ctx):
        q = ctx.quick
        ctx.fleet_meters = 100 if q else 1000
        ctx.fleet_idle_s = 2
        ctx.fleet_kill_meters = 15 if q else 60
        ctx.fleet_reload_meters = 10 if q else 50
        ctx.fleet_reload_keys = 100000 if q else 1000000
        return fn(ctx)
    return run


def _med(runs, *path):
    def get(r):
        for p in path:
            r = r[p]
        return r
    return statistics.median(get(r) for r in runs)


def table(ctx, row, failed):
    """The fleet lines (README: "fleet ...")."""
    def skipped(name):
        r = ctx.r.get(name)
        if r and 'skipped' in r:
            row(name + ': skipped', r['skipped'][:90])
            return True
        return failed(name)

    if not skipped('fleet-cache'):
        loc, red = ctx.r['fleet-cache']['local'], ctx.r['fleet-cache']['redis']
        m = loc[0]['full']['meters']
        for what, key in (('full', 'full'), ('resumed', 'resumed')):
            rr, rl = _med(red, key, 'rate'), _med(loc, key, 'rate')
            row('fleet: %s handshakes/s, Redis cache vs local (M=%d, median of %d)' % (what, m, len(red)),
                B.fmt_rate(rr), B.fmt_rate(rl) + ' local', '%.2f' % (rr / rl if rl else 0), '>= 0.9')
        row('  resumed of M: Redis / local; Redis hits, misses, timeouts, overflow',
            '%d / %d' % (_med(red, 'resumed_n'), _med(loc, 'resumed_n')),
            '%d, %d, %d, %d' % tuple(_med(red, 'cache', 'cache_' + k)
                                     for k in ('hits', 'misses', 'timeouts', 'overflow')))
        row('fleet: Redis memory / resumable meter (used_memory growth / keys)',
            '%.0f B' % _med([dict(x=r['redis_bytes'] / max(r['redis_keys'], 1)) for r in red], 'x'),
            '%d keys' % red[0]['redis_keys'])
    if not skipped('fleet-kill'):
        k = ctx.r['fleet-kill']
        row('fleet: kill -9 of 1 of 3 nodes (N=%d, %d on it): full handshakes' % (k['n'], k['held']),
            '%d' % k['full'], 'resumed %d, replayed %d' % (k['resumed'], k['replayed']), '', '0')
        row('  seconds until every meter is answered (each asks, again every %.1f s)' % test_fleet.EVERY,
            '%.2f s' % k['seconds'], '%d resends' % k['resent'])
        row('  air bytes / recovered meter: resumed handshake + alerts vs a full one',
            '%.0f + %.0f B' % (k['recovered_hs'], k['recovered_alerts']), '%.0f B full' % k['full_hs'],
            '%.2f' % ((k['recovered_hs'] + k['recovered_alerts']) / k['full_hs'] if k['full_hs'] else 0))
    if not skipped('fleet-reload'):
        r = ctx.r['fleet-reload']
        q, rl = r['quiet'], r['reload']
        row('fleet: round trip p99 / max during a reload of %d keys (%d meters, K=1)' % (r['keys'], r['meters']),
            '%.2f / %.1f ms' % (rl['p99_ms'], rl.get('max_ms', 0)),
            '%.2f / %.1f ms no reload' % (q['p99_ms'], q.get('max_ms', 0)),
            '%.2f' % (rl['p99_ms'] / q['p99_ms'] if q['p99_ms'] else 0), 'max <= 50 ms')
        row('  reload took; lost during, no reload', '%.2f s%s' % (r['reload_s'], '' if r['fits'] else
                                                                  ' (longer than the window)'),
            '%d, %d' % (rl['lost_window'], q['lost_window']))

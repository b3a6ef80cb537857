#!/usr/bin/env python3
"""session_cache: resumption shared by a terminator fleet through Redis.

A real redis-server (started and stopped here), two psktund terminators A
and B sharing it and one cache key, meters -> psktund gateway -> badlink ->
A or B. Moving the badlink's upstream from A to B and rebinding its flows is
what a NAT rebinding behind a load balancer that hashes on the source does:
the meter's next handshake lands on B, which has never seen its session.

  * B resumes every meter's session from Redis: handshakes_resumed exact,
    cache_hits exact; what Redis holds names no session ID, holds no
    identity, no PSK, no session ID in clear.
  * Redis killed: both serve on, with full handshakes, and say so
    (cache_up=0, cache_errors, one log line); Redis back: one log line,
    cache_up=1, the sessions made meanwhile are stored, and the meters
    resume across nodes again: no full handshake but while it was down.
  * Redis stopped (SIGSTOP): no handshake waits more than 100 ms for it.
  * Redis memory per resumable meter, measured over N meters.

Exit 0: all passed, 1: a test failed, 77: psktund or redis-server missing."""

import os
import re
import shutil
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402

N_METERS = 3


# ------------------------------------------------------------ a small Redis client (RESP)

def _resp_read(f):
    line = f.readline()
    if not line:
        raise Fail('redis: connection closed')
    kind, rest = line[:1], line[1:-2]
    if kind in (b'+', b'-'):
        if kind == b'-':
            raise Fail('redis error: %r' % rest)
        return rest
    if kind == b':':
        return int(rest)
    if kind == b'$':
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b'*':
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise Fail('redis: bad reply %r' % line)


def redis_cmd(port, *args, timeout=5):
    with socket.create_connection((h.LO, port), timeout=timeout) as s:
        out = b'*%d\r\n' % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b'$%d\r\n%s\r\n' % (len(a), a)
        s.sendall(out)
        with s.makefile('rb') as f:
            return _resp_read(f)


class Redis:
    def __init__(self, env, name='redis'):
        self.exe = shutil.which('redis-server')
        if not self.exe:
            raise h.Skip('redis-server not installed (Debian: redis-server)')
        self.env = env
        self.name = name
        self.dir = env.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = self._free_tcp_port()
        self.peer = None
        env.defer(self.stop)

    @staticmethod
    def _free_tcp_port():
        s = socket.socket()
        s.bind((h.LO, 0))
        p = s.getsockname()[1]
        s.close()
        return p

    def start(self):
        argv = [self.exe, '--port', str(self.port), '--bind', h.LO, '--save', '', '--appendonly', 'no',
                '--dir', self.dir, '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning']
        self.peer = h.Peer(self.name, argv, stdin=False)
        h.wait_until(lambda: redis_cmd(self.port, 'PING', timeout=1) == b'PONG', h.T, 'redis answers PING')
        return self

    def kill(self):
        self.peer.stop(signal.SIGKILL)

    def stop(self):
        if self.peer and self.peer.running():
            self.peer.stop()

    @property
    def url(self):
        return 'redis://%s:%d/0' % (h.LO, self.port)

    def cmd(self, *args):
        return redis_cmd(self.port, *args)


# ------------------------------------------------------------ the fleet

def need_hiredis(env):
    """Skip unless psktund was built with the Redis session cache."""
    d = env.path('hiredis-check')
    os.makedirs(d, exist_ok=True)
    h.write_keys(os.path.join(d, 'keys.psk'), {'meter-0001': bytes(16)})
    with open(os.path.join(d, 'cache.key'), 'w') as f:
        f.write('00' * 32 + '\n')
    os.chmod(os.path.join(d, 'cache.key'), 0o600)
    conf = os.path.join(d, 'psktun.conf')
    with open(conf, 'w') as f:
        f.write(h.config_text('terminator', tunnels=[dict(name='t1', accept='127.0.0.1:1', connect='127.0.0.1:2')],
                              extra='session_cache = { redis = "redis://127.0.0.1:1/0"; key_file = "cache.key"; };'))
    rc, out, err = h.check_config(conf)
    if 'built without Redis' in out + err:
        raise h.Skip('psktund is built without hiredis (configure --with-hiredis)')

def _cache_conf(redis):
    return 'session_cache = { redis = "%s"; key_file = "cache.key"; };' % redis.url


def _terminator(env, name, keys, echo, redis, cache_key, dtls=None, state=False):
    port = h.free_udp_port()
    d = h.Daemon(env, name, 'terminator',
                 [dict(name='t1', accept='%s:%d' % (h.LO, port), connect=echo.addr)], keys,
                 dtls=dtls, extra=_cache_conf(redis) + ('\nstate_file = "state";' if state else ''))
    p = os.path.join(d.dir, 'cache.key')
    with open(p, 'w') as f:
        f.write(cache_key.hex() + '\n')
    os.chmod(p, 0o600)
    env.defer(d.stop)
    d.start()
    d.port, d.addr = port, '%s:%d' % (h.LO, port)
    return d


class Fleet:
    def __init__(self, env, n=N_METERS):
        h.psktund()
        need_hiredis(env)
        self.redis = Redis(env).start()
        self.keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(n)}
        self.meters = [env.meter(name=k) for k in self.keys]
        echo = env.echo(prefix=b'E:')
        cache_key = os.urandom(32)
        self.a = _terminator(env, 'A', self.keys, echo, self.redis, cache_key)
        self.b = _terminator(env, 'B', self.keys, echo, self.redis, cache_key)
        for d in (self.a, self.b):
            h.wait_until(lambda: d.stats().get('cache_up') == 1, h.T, '%s: cache_up=1' % d.name)
        self.sids = set()
        self.bl = BadLink(upstream=(h.LO, self.a.port), max_flows=1024)
        self.bl.drop_if = self._watch
        env.defer(self.bl.stop)
        self.gw = h.gateway(env, self.keys, [(k, m.source) for k, m in zip(self.keys, self.meters)],
                            '%s:%d' % self.bl.listen_addr)

    def _watch(self, direction, data):
        """Every session ID a ServerHello names (to check that Redis never holds one)."""
        if direction == 'down' and len(data) > 13 + 12 + 35 and data[0] == 22 and data[13] == 2:
            off = 13 + 12 + 2 + 32
            n = data[off]
            if 0 < n <= 32 and len(data) >= off + 1 + n:
                self.sids.add(bytes(data[off + 1:off + 1 + n]))
        return False

    def to(self, d):
        """The load balancer sends every flow to d from now on, from new source ports."""
        self.bl.upstream = (h.LO, d.port)
        self.bl.rebind()

    def round(self, tag, meters=None):
        """Each meter asks (again every second until answered) and gets its
        answer; an earlier round's answer that arrives late (the gateway sends
        again what went on a dead path, and the meter resent it too) is
        skipped."""
        for m in meters or self.meters:
            p = b'%s/%s' % (m.name.encode(), tag)
            deadline = time.monotonic() + 30
            while True:
                got = m.request_retry(p, self.gw.addr, timeout=max(0.1, deadline - time.monotonic()))
                if got == b'E:' + p:
                    break
                if not got.startswith(b'E:%s/' % m.name.encode()) or time.monotonic() > deadline:
                    raise Fail('%s reply (%s): got %r' % (m.name, tag.decode(), got))


def _show_cache(d, pattern, dump=False):
    """show's (or show --dump's) first line, matched against pattern; returns it."""
    out = d.ctl('show', '--dump') if dump else d.ctl('show')
    first = out.splitlines()[0]
    if not re.match(pattern, first):
        raise Fail('%s: show%s first line %r does not match %r' % (d.name, ' --dump' if dump else '', first,
                                                                  pattern))
    return first


def _hs(d):
    st = d.stats()
    return st['handshakes_completed'], st['handshakes_resumed']


def test_a_meter_moved_to_another_node_resumes_through_redis(env):
    f = Fleet(env)
    n = len(f.meters)
    f.round(b'on-a')
    eq(_hs(f.a), (n, 0), 'A handshakes (completed, resumed)')
    eq(f.a.stats()['cache_stores'], n, 'A cache_stores')
    eq(f.redis.cmd('DBSIZE'), n, 'Redis keys')

    f.to(f.b)
    f.round(b'on-b')
    st = f.b.stats()
    eq((st['handshakes_completed'], st['handshakes_resumed']), (n, n), 'B handshakes (completed, resumed)')
    eq((st['cache_hits'], st['cache_misses'], st['cache_timeouts'], st['cache_errors'], st['cache_overflow']),
       (n, 0, 0, 0, 0), 'B cache_hits, cache_misses, cache_timeouts, cache_errors, cache_overflow')
    eq(st['cookies_sent'], 0, 'B cookies_sent (a resumption skips the cookie)')
    eq(_hs(f.gw), (2 * n, n), 'gateway handshakes (completed, resumed)')

    # What Redis holds opens nothing by itself.
    keys = f.redis.cmd('KEYS', '*')
    eq(len(keys), n, 'Redis keys after B')     # B resumed: GnuTLS stores nothing new
    if len(f.sids) != n:
        raise Fail('session IDs seen in ServerHellos: %d, want %d' % (len(f.sids), n))
    secrets = list(f.sids) + [k.encode() for k in f.keys] + list(f.keys.values())
    for k in keys:
        v = f.redis.cmd('GET', k)
        if not k.startswith(b'psktun:') or len(k) != len('psktun:') + 16:
            raise Fail('Redis key %r is not psktun: + 16 bytes' % k)
        for s in secrets:
            if s in k or s in v:
                raise Fail('Redis holds %r in clear (key %r)' % (s, k))
        ttl = f.redis.cmd('PTTL', k)
        if not 86000 * 1000 < ttl <= 86400 * 1000:
            raise Fail('Redis key %r PTTL %r, want about a day' % (k, ttl))


def test_redis_down_serves_with_full_handshakes_and_back_resumes_again(env):
    f = Fleet(env)
    n = len(f.meters)
    f.round(b'on-a')
    where = '%s:%d' % (h.LO, f.redis.port)
    # show's first line: the cache's state and counters (fresh meters name no session: no lookups)
    _show_cache(f.a, r'session cache: Redis at %s up for \d+ s; hits 0, misses 0, timeouts 0, '
                r'overflow 0, stores %d, errors 0$' % (re.escape(where), n))
    f.redis.kill()
    for d in (f.a, f.b):
        h.wait_until(lambda: d.stats()['cache_up'] == 0, h.T, '%s: cache_up=0' % d.name)
    dump = _show_cache(f.a, r'cache\t%s\t(down\t\d+\t\d+|reconnecting\t\d+\t-)\t[^\t-][^\t]*\t0\t1'
                       r'\t0\t0\t0\t0\t%d\t\d+$' % (re.escape(where), n), dump=True)
    h.log('show --dump with Redis down: %s' % dump)
    _show_cache(f.a, r'session cache: Redis at %s down for \d+ s \([^)]+\)(, next try in \d+\.\d s|, '
                r'reconnecting); hits 0, misses 0, timeouts 0, overflow 0, stores %d, errors \d+$'
                % (re.escape(where), n))
    f.to(f.b)
    f.round(b'on-b-redis-down')
    st = f.b.stats()
    eq((st['handshakes_completed'], st['handshakes_resumed'], st['cache_hits']), (n, 0, 0),
       'B handshakes_completed, handshakes_resumed, cache_hits while Redis is down')
    # per meter at least: two ClientHellos (before and after the cookie) not looked up, one store not made
    if st['cache_errors'] < 3 * n:
        raise Fail('B cache_errors %d, want at least %d' % (st['cache_errors'], 3 * n))

    f.redis.start()     # empty: it kept nothing
    for d in (f.a, f.b):
        h.wait_until(lambda: d.stats()['cache_up'] == 1, 30, '%s: cache_up=1 again' % d.name)
    _show_cache(f.b, r'session cache: Redis at %s up for \d+ s; hits 0, misses 0, timeouts 0, overflow 0, '
                r'stores \d+, errors %d$' % (re.escape(where), st['cache_errors']))
    for d in (f.a, f.b):
        text = d.log_text()
        eq(text.count('session cache: Redis at %s:%d is down' % (h.LO, f.redis.port)), 1,
           '%s: "down" log lines' % d.name)
        eq(text.count('session cache: Redis at %s:%d is back' % (h.LO, f.redis.port)), 1,
           '%s: "back" log lines' % d.name)
    # Back, Redis (empty: it kept nothing) gets each node's cache again: A's n
    # sessions and the n B made meanwhile; on A the meters resume from Redis:
    # full handshakes only while it was down.
    h.wait_until(lambda: f.redis.cmd('DBSIZE') == 2 * n, h.T, 'Redis holds the %d sessions of A and B' % (2 * n))
    a0 = f.a.stats()
    f.to(f.a)
    f.round(b'on-a-again')
    a1 = f.a.stats()
    eq((a1['handshakes_completed'] - a0['handshakes_completed'],
        a1['handshakes_resumed'] - a0['handshakes_resumed'], a1['cache_hits'] - a0['cache_hits']),
       (n, n, n), 'A new handshakes (completed, resumed), cache_hits once Redis is back')


def test_redis_stuck_never_stalls_a_handshake(env):
    """Redis stopped (SIGSTOP: the connection stays open, nothing answers):
    a held ClientHello goes on after 100 ms, the PING watchdog declares Redis
    down, every meter is served with a full handshake; SIGCONT: back."""
    f = Fleet(env)
    n = len(f.meters)
    f.round(b'on-a')
    os.kill(f.redis.peer.proc.pid, signal.SIGSTOP)
    try:
        f.to(f.b)
        t0 = time.monotonic()
        f.round(b'on-b-redis-stuck')
        h.log('round with Redis stuck: %.2f s' % (time.monotonic() - t0))
        st = f.b.stats()
        eq((st['handshakes_completed'], st['handshakes_resumed'], st['cache_hits']), (n, 0, 0),
           'B handshakes_completed, handshakes_resumed, cache_hits while Redis is stuck')
        if st['cache_timeouts'] + st['cache_errors'] < 2 * n:
            raise Fail('B cache_timeouts %d + cache_errors %d, want at least %d' % (
                st['cache_timeouts'], st['cache_errors'], 2 * n))
        h.wait_until(lambda: f.b.stats()['cache_up'] == 0, h.T, 'B: cache_up=0')
    finally:
        os.kill(f.redis.peer.proc.pid, signal.SIGCONT)
    h.wait_until(lambda: f.b.stats()['cache_up'] == 1, 30, 'B: cache_up=1 again')


def test_a_late_redis_answer_strands_no_hello_after_the_cookie(env):
    """Redis stalls (SIGSTOP): B's held ClientHello goes on after 100 ms and
    gets a HelloVerifyRequest; Redis wakes and its late answer puts the
    session in B's local cache before the ClientHello with the cookie
    (message_seq 1) is handled. That one must pass the cookie check and go to
    GnuTLS with the cookie's state: straight to a resumed handshake, GnuTLS
    waited for a message_seq 0 that never came, and both sides failed the
    handshake (the gateway after its timeout) before the meter got through."""
    f = Fleet(env, 1)
    m = f.meters[0]
    f.round(b'on-a')
    # A's store is asynchronous: stopped before it, Redis may take B's lookup
    # first once woken, a miss (a full handshake, legitimately); so it is there first
    h.wait_until(lambda: f.redis.cmd('DBSIZE') == 1, h.T, "Redis holds A's session")
    b0 = f.b.stats()
    os.kill(f.redis.peer.proc.pid, signal.SIGSTOP)
    try:
        f.to(f.b)
        m.send(b'%s/on-b' % m.name.encode(), f.gw.addr)
        # polled off the control socket (no psktunctl start): SIGCONT follows the
        # cookie within milliseconds, inside the 100 ms the next hello is held
        h.wait_until(lambda: f.b.stats_now()['cookies_sent'] > b0['cookies_sent'], h.T,
                     'B: the held ClientHello went on and got a cookie', interval=0.002)
    finally:
        os.kill(f.redis.peer.proc.pid, signal.SIGCONT)
    eq(m.recv(timeout=h.T)[0], b'E:%s/on-b' % m.name.encode(), 'answer on B')
    st, g = f.b.stats(), f.gw.stats()
    # the held hello's; and one more if the hello with the cookie came while
    # Redis still slept and was held past the limit too (a busy machine between
    # the cookie and SIGCONT)
    if st['cache_timeouts'] - b0['cache_timeouts'] not in (1, 2):
        raise Fail('B cache_timeouts %d, want 1 or 2' % (st['cache_timeouts'] - b0['cache_timeouts']))
    # the late answer; and one more if the hello with the cookie came while Redis
    # still slept (held and looked up too), not if it came after
    if st['cache_hits'] - b0['cache_hits'] not in (1, 2):
        raise Fail('B cache_hits %d, want 1 or 2' % (st['cache_hits'] - b0['cache_hits']))
    # Resumed when the late answer came within the second hello's 100 ms; when
    # the machine was slower than that (both lookups timed out) a full
    # handshake, legitimately. Never stranded, never failed.
    resumed = 0 if st['cache_timeouts'] - b0['cache_timeouts'] == 2 else 1
    h.log('B cache_timeouts +%d: the hello with the cookie %s' % (
        st['cache_timeouts'] - b0['cache_timeouts'], 'resumed' if resumed else 'timed out too: full handshake'))
    eq((st['handshakes_completed'] - b0['handshakes_completed'], st['handshakes_resumed'] - b0['handshakes_resumed'],
        st['handshakes_failed'] - b0['handshakes_failed']), (1, resumed, 0),
       'B handshakes completed, resumed, failed')
    eq((g['handshakes_completed'], g['handshakes_resumed'], g['handshakes_failed']), (2, resumed, 0),
       'gateway handshakes completed, resumed, failed')


def test_redis_memory_per_resumable_meter(env):
    """Measured, printed: Redis bytes per resumable meter (MEMORY USAGE of
    each key, and used_memory's growth over N meters)."""
    n = 200
    f = Fleet(env, n)
    used0 = int(dict(line.split(b':', 1) for line in f.redis.cmd('INFO', 'memory').split(b'\r\n')
                     if b':' in line)[b'used_memory'])
    f.round(b'on-a')
    eq(f.redis.cmd('DBSIZE'), n, 'Redis keys')
    info = dict(line.split(b':', 1) for line in f.redis.cmd('INFO', 'memory').split(b'\r\n') if b':' in line)
    used1 = int(info[b'used_memory'])
    keys = f.redis.cmd('KEYS', '*')
    usage = [f.redis.cmd('MEMORY', 'USAGE', k) for k in keys]
    vlen = [f.redis.cmd('STRLEN', k) for k in keys]
    msg = ('Redis per resumable meter (%d meters): MEMORY USAGE %.0f B (min %d, max %d), value %.0f B, '
           'key %d B; used_memory growth %.0f B' % (n, sum(usage) / n, min(usage), max(usage),
                                                    sum(vlen) / n, len(keys[0]), (used1 - used0) / n))
    print(msg, flush=True)
    h.log(msg)


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""badlink: an impairing UDP proxy for psktun's integration tests.

It sits between a DTLS client (the psktund gateway, openssl s_client, a
libcoap client, ...) and a server.  Clients send to the proxy's listen
address; for each distinct client address the proxy keeps its own upstream
socket (a "flow", as a NAT keeps a binding) and relays the server's replies
on it back to that client.  On the way it impairs the traffic:

  loss       drop a datagram with probability p
  dup        send a datagram twice with probability p
  reorder    with probability p hold a datagram back and send it right after
             the next one in the same flow and direction (or, if none comes
             within reorder_hold_ms, send it alone then)
  delay_ms   delay each copy by a uniform random time in (lo, hi) ms
  rebind     open a fresh upstream socket for every flow, so the server sees
             a new source port, and close the old one, so replies still on
             their way to it are lost (what a carrier NAT does): every
             rebind_every seconds and/or on demand with rebind()
  drop_if    a callable (direction, payload) -> bool set by a test: the
             datagrams it names are dropped (a given handshake flight, say)
  outage     drop everything (outage(seconds), set_down(True/False)),
             including datagrams already in the delay queue or held for
             reordering when their time comes

"up" is client -> server, "down" is server -> client.  loss, dup, reorder
and delay_ms take one value for both directions or a dict such as
{'up': 0.25, 'down': 0.0}.  Every random decision comes from a generator
seeded from `seed`, one generator per direction and impairment, so the n-th
datagram of a direction gets the same loss/dup/reorder decision on every run
with the same seed whatever the timing.

Everything runs on one thread; the delay queue is bounded (max_queue: a
datagram that does not fit is dropped and counted as dropped_overflow), and
so is the number of flows (max_flows: datagrams from further clients are
dropped and counted as dropped_noflow).  stop() (or leaving the `with`
block) joins the thread and closes every socket.  Only IPv4 loopback.

Module use:

    with BadLink(listen=('127.0.0.1', 0), upstream=('127.0.0.1', port),
                 loss=0.25, dup=0.1, reorder=0.1, delay_ms=(20, 200),
                 seed=1) as bl:
        client.sendto(b'x', bl.listen_addr)
        bl.wait_for(lambda s: s['up']['forwarded'] >= 1, timeout=5)
        bl.rebind(); bl.outage(2.0); print(bl.stats())

Command line (prints "listen=127.0.0.1:PORT" when ready; SIGUSR1 rebinds,
SIGUSR2 toggles an outage, SIGTERM/SIGINT stop and print the counters as
key=value lines):

    python3 badlink.py --upstream 127.0.0.1:5684 --loss 0.25 --dup 0.1 \\
        --reorder 0.1 --delay 20-200 --rebind-every 5 --seed 1
"""

import argparse
import heapq
import ipaddress
import itertools
import math
import random
import selectors
import signal
import socket
import sys
import threading
import time

DIRS = ('up', 'down')

COUNTERS = (
    'received',          # datagrams that reached the proxy
    'forwarded',         # datagrams sent on (duplicates included)
    'bytes_forwarded',
    'dropped',           # all drops: the sum of the dropped_* below
    'dropped_loss',      # random loss
    'dropped_outage',    # outage (on arrival or when due to be sent)
    'dropped_overflow',  # delay queue full
    'dropped_noflow',    # up: max_flows reached; down: flow gone before send
    'dropped_error',     # the kernel refused the send (e.g. ECONNREFUSED)
    'dropped_rule',      # drop_if said so (a test's deterministic loss)
    'duplicated',        # datagrams sent twice
    'reordered',         # held datagrams released after a later one
    'reorder_timeouts',  # held datagrams released alone after reorder_hold_ms
    'delayed',           # copies that went through the delay queue
    'unreachable',       # ICMP port unreachable seen on an upstream socket (down only)
)

_RECV_MAX = 65535


def _dirs(direction):
    if direction == 'both':
        return DIRS
    if direction not in DIRS:
        raise ValueError("direction must be 'up', 'down' or 'both', not %r" % (direction,))
    return (direction,)


def _parse_addr(addr, what):
    if isinstance(addr, str):
        host, _, port = addr.rpartition(':')
        addr = (host, int(port))
    host, port = addr
    ip = ipaddress.ip_address(host)
    if ip.version != 4 or not ip.is_loopback:
        raise ValueError('%s: only IPv4 loopback addresses, not %r' % (what, host))
    if not 0 <= int(port) <= 65535:
        raise ValueError('%s: bad port %r' % (what, port))
    return (str(ip), int(port))


def _per_dir(name, value, norm, zero):
    """value for both directions, or {'up': v, 'down': v} (missing = zero)."""
    if isinstance(value, dict):
        unknown = set(value) - set(DIRS)
        if unknown:
            raise ValueError('%s: unknown direction(s) %s' % (name, sorted(unknown)))
        return {d: norm(name, value.get(d, zero)) for d in DIRS}
    v = norm(name, value)
    return {d: v for d in DIRS}


def _prob(name, p):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError('%s: probability %r is not in [0, 1]' % (name, p))
    return p


def _delay(name, d):
    if d is None:
        return (0.0, 0.0)
    if isinstance(d, (int, float)):
        d = (d, d)
    lo, hi = float(d[0]), float(d[1])
    if lo < 0 or hi < lo:
        raise ValueError('%s: bad range %r' % (name, d))
    return (lo, hi)


def _big_buffers(sock):
    """Large socket buffers, so the kernel does not drop (uncounted) in bursts."""
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 1 << 20)
        except OSError:
            pass


class _Flow:
    __slots__ = ('client', 'sock', 'port', 'last_active', 'held', 'rebinds')

    def __init__(self, client):
        self.client = client
        self.sock = None
        self.port = None
        self.last_active = time.monotonic()
        self.held = {d: None for d in DIRS}   # (payload, copies, deadline)
        self.rebinds = 0


class BadLink:
    """An impairing UDP proxy running on its own thread (see the module doc)."""

    def __init__(self, listen=('127.0.0.1', 0), upstream=None, *,
                 loss=0.0, dup=0.0, reorder=0.0, delay_ms=None,
                 reorder_hold_ms=1000, rebind_every=None, seed=0,
                 max_queue=4096, max_flows=256, flow_idle_s=None,
                 start=True):
        if upstream is None:
            raise ValueError('upstream address required')
        self._listen_req = _parse_addr(listen, 'listen')
        self.upstream = _parse_addr(upstream, 'upstream')
        self.loss = _per_dir('loss', loss, _prob, 0.0)
        self.dup = _per_dir('dup', dup, _prob, 0.0)
        self.reorder = _per_dir('reorder', reorder, _prob, 0.0)
        self.delay_ms = _per_dir('delay_ms', delay_ms, _delay, None)
        self.reorder_hold = float(reorder_hold_ms) / 1000.0
        if rebind_every is not None and float(rebind_every) <= 0:
            raise ValueError('rebind_every must be > 0 seconds')
        self.rebind_every = None if rebind_every is None else float(rebind_every)
        self.seed = seed
        self.max_queue = int(max_queue)
        self.max_flows = int(max_flows)
        self.flow_idle_s = None if flow_idle_s is None else float(flow_idle_s)
        # drop_if(direction, payload) -> bool: a test's exact, deterministic loss
        # (e.g. one given handshake flight), counted as dropped_rule
        self.drop_if = None

        # one generator per direction and impairment, so that e.g. the loss
        # decisions do not depend on the dup or reorder settings
        self._rng = {d: {k: random.Random('badlink/%s/%s/%s' % (seed, d, k))
                         for k in ('loss', 'dup', 'reorder', 'delay')}
                     for d in DIRS}

        self._cond = threading.Condition()   # guards counters and flows
        self._counters = {d: dict.fromkeys(COUNTERS, 0) for d in DIRS}
        self._rebinds = 0          # rebind events
        self._flows_rebound = 0    # flow sockets replaced
        self._flows_created = 0
        self._flows_expired = 0
        self._outages = 0
        self._down_until = {d: 0.0 for d in DIRS}

        self._flows = {}           # client addr -> _Flow
        self._queue = []           # heap: (due, seq, dir, flow, payload)
        self._seq = itertools.count()
        self._cmds = []            # (fn, args, done_event, result_box)
        self._stopping = False
        self._thread = None
        self.error = None          # exception that killed the proxy thread

        self._sel = selectors.DefaultSelector()
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            _big_buffers(self._listen)
            self._listen.bind(self._listen_req)
            self._listen.setblocking(False)
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self.listen_addr = self._listen.getsockname()
            self._sel.register(self._listen, selectors.EVENT_READ, None)
            self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        except BaseException:
            self._close_all()
            raise
        if start:
            self.start()

    # ------------------------------------------------------------ lifecycle
    @property
    def port(self):
        return self.listen_addr[1]

    def start(self):
        if self._thread is not None:
            raise RuntimeError('already started')
        self._thread = threading.Thread(target=self._run, name='badlink:%d' % self.port,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10.0):
        """Stop the thread, close every socket; raise if the thread had failed."""
        t = self._thread
        if t is not None:
            self._stopping = True
            self._wake()
            t.join(timeout)
            if t.is_alive():
                raise RuntimeError('badlink thread did not stop within %ss' % timeout)
        else:
            self._close_all()
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError('badlink thread failed: %r' % (err,)) from err

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except Exception:
            if exc_type is None:
                raise
        return False

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    # -------------------------------------------------------------- control
    def rebind(self, client=None, timeout=5.0):
        """Give every flow (or the flow of `client`) a fresh upstream socket.

        Returns {client: (old_port, new_port)} once done."""
        return self._call(self._do_rebind, (client,), timeout)

    def set_down(self, down=True, direction='both'):
        """Start (True) or end (False) an outage, in one direction or both."""
        dirs = _dirs(direction)
        with self._cond:
            for d in dirs:
                self._down_until[d] = math.inf if down else 0.0
            if down:
                self._outages += 1

    def outage(self, seconds, direction='both'):
        """Drop everything for `seconds` from now (returns at once)."""
        dirs = _dirs(direction)
        until = time.monotonic() + float(seconds)
        with self._cond:
            for d in dirs:
                self._down_until[d] = until
            self._outages += 1

    def is_down(self, direction='both'):
        now = time.monotonic()
        dirs = _dirs(direction)
        with self._cond:
            return any(self._down_until[d] > now for d in dirs)

    # -------------------------------------------------------------- reading
    def stats(self):
        """A snapshot: {'up': {counter: n}, 'down': {...}, 'rebinds': n, ...}."""
        with self._cond:
            return self._snapshot()

    def _snapshot(self):
        return {
            'up': dict(self._counters['up']),
            'down': dict(self._counters['down']),
            'rebinds': self._rebinds,
            'flows_rebound': self._flows_rebound,
            'flows': len(self._flows),
            'flows_created': self._flows_created,
            'flows_expired': self._flows_expired,
            'outages': self._outages,
            'queued': len(self._queue),
        }

    def wait_for(self, pred, timeout):
        """Wait until pred(stats()) is true; return the snapshot or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                snap = self._snapshot()
                if pred(snap):
                    return snap
                if self.error is not None:
                    raise RuntimeError('badlink thread failed: %r' % (self.error,))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError('badlink condition not met in %ss; stats=%r'
                                       % (timeout, snap))
                self._cond.wait(min(left, 0.5))

    def upstream_ports(self):
        """{client address: current upstream source port} for every flow."""
        with self._cond:
            return {c: f.port for c, f in self._flows.items()}

    def __repr__(self):
        return '<BadLink %s:%d -> %s:%d>' % (self.listen_addr + self.upstream)

    # ------------------------------------------------------------- internals
    def _wake(self):
        try:
            self._wake_w.send(b'\0')
        except (BlockingIOError, OSError):
            pass   # already awake (full) or closed

    def _call(self, fn, args, timeout):
        if not self.running:
            raise RuntimeError('badlink is not running')
        done = threading.Event()
        box = []
        with self._cond:
            self._cmds.append((fn, args, done, box))
        self._wake()
        if not done.wait(timeout):
            raise TimeoutError('badlink command not done within %ss' % timeout)
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    def _run(self):
        try:
            next_rebind = (time.monotonic() + self.rebind_every
                           if self.rebind_every else math.inf)
            while not self._stopping:
                now = time.monotonic()
                due = min(next_rebind, self._next_deadline(now))
                timeout = None if due == math.inf else max(0.0, due - now)
                events = self._sel.select(timeout)
                with self._cond:
                    for key, _ in events:
                        if key.fileobj is self._wake_r:
                            self._drain_wake()
                        elif key.fileobj is self._listen:
                            self._read_listen()
                        else:
                            self._read_flow(key.data)
                    now = time.monotonic()
                    self._run_cmds()
                    if now >= next_rebind:
                        self._do_rebind(None)
                        next_rebind += self.rebind_every
                        if next_rebind <= now:   # we fell behind: do not burst
                            next_rebind = now + self.rebind_every
                    self._release_due(now)
                    self._expire_flows(now)
                    self._cond.notify_all()
        except BaseException as e:   # surfaced by stop() and wait_for()
            self.error = e
        finally:
            with self._cond:
                self._fail_cmds()
                self._close_all()
                self._cond.notify_all()

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _run_cmds(self):
        cmds, self._cmds = self._cmds, []
        for fn, args, done, box in cmds:
            try:
                box.append(fn(*args))
            except Exception as e:
                box.append(e)
            done.set()

    def _fail_cmds(self):
        cmds, self._cmds = self._cmds, []
        for _, _, done, box in cmds:
            box.append(RuntimeError('badlink stopped'))
            done.set()

    def _next_deadline(self, now):
        due = self._queue[0][0] if self._queue else math.inf
        with self._cond:
            for f in self._flows.values():
                for h in f.held.values():
                    if h is not None and h[2] < due:
                        due = h[2]
                if self.flow_idle_s is not None:
                    due = min(due, f.last_active + self.flow_idle_s)
        return due

    def _down(self, d, now):
        return self._down_until[d] > now

    def _count(self, d, what, n=1):
        self._counters[d][what] += n

    def _drop(self, d, why):
        c = self._counters[d]
        c[why] += 1
        c['dropped'] += 1

    def _new_upstream(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _big_buffers(s)
            s.bind(('127.0.0.1', 0))
            s.connect(self.upstream)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return s

    def _attach(self, flow, sock):
        flow.sock = sock
        flow.port = sock.getsockname()[1]
        self._sel.register(sock, selectors.EVENT_READ, flow)

    def _detach(self, flow):
        if flow.sock is not None:
            try:
                self._sel.unregister(flow.sock)
            except (KeyError, ValueError):
                pass
            flow.sock.close()
            flow.sock = None

    def _read_listen(self):
        for _ in range(256):   # bounded batch, then let timers run
            try:
                data, client = self._listen.recvfrom(_RECV_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue   # e.g. an ICMP error from a gone client
            flow = self._flows.get(client)
            if flow is None:
                if len(self._flows) >= self.max_flows:
                    self._count('up', 'received')
                    self._drop('up', 'dropped_noflow')
                    continue
                flow = _Flow(client)
                self._attach(flow, self._new_upstream())
                self._flows[client] = flow
                self._flows_created += 1
            flow.last_active = time.monotonic()
            self._impair('up', flow, data)

    def _read_flow(self, flow):
        if flow.sock is None:
            return
        for _ in range(256):
            try:
                data = flow.sock.recv(_RECV_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self._count('down', 'unreachable')
                continue
            except OSError:
                continue
            flow.last_active = time.monotonic()
            self._impair('down', flow, data)

    def _impair(self, d, flow, data):
        rng = self._rng[d]
        self._count(d, 'received')
        now = time.monotonic()
        # draw first, so the n-th datagram's fate does not depend on outages
        lost = rng['loss'].random() < self.loss[d]
        if self._down(d, now):
            self._drop(d, 'dropped_outage')
            return
        if lost:
            self._drop(d, 'dropped_loss')
            return
        rule = self.drop_if
        if rule is not None and rule(d, data):
            self._drop(d, 'dropped_rule')
            return
        copies = 1
        if self.dup[d] > 0.0 and rng['dup'].random() < self.dup[d]:
            copies = 2
            self._count(d, 'duplicated')
        held = flow.held[d]
        if held is not None:
            flow.held[d] = None
            self._emit(d, flow, data, copies, now)
            self._emit(d, flow, held[0], held[1], now)
            self._count(d, 'reordered')
        elif self.reorder[d] > 0.0 and rng['reorder'].random() < self.reorder[d]:
            flow.held[d] = (data, copies, now + self.reorder_hold)
        else:
            self._emit(d, flow, data, copies, now)

    def _emit(self, d, flow, data, copies, now):
        lo, hi = self.delay_ms[d]
        for _ in range(copies):
            if hi <= 0.0:
                self._send(d, flow, data, now)
                continue
            if len(self._queue) >= self.max_queue:
                self._drop(d, 'dropped_overflow')
                continue
            ms = lo if lo == hi else self._rng[d]['delay'].uniform(lo, hi)
            heapq.heappush(self._queue, (now + ms / 1000.0, next(self._seq), d, flow, data))
            self._count(d, 'delayed')

    def _send(self, d, flow, data, now):
        if self._down(d, now):
            self._drop(d, 'dropped_outage')
            return
        try:
            if d == 'up':
                if flow.sock is None:   # flow expired meanwhile
                    self._drop(d, 'dropped_noflow')
                    return
                flow.sock.send(data)
            else:
                self._listen.sendto(data, flow.client)
        except (BlockingIOError, InterruptedError):
            self._drop(d, 'dropped_overflow')   # socket buffer full
            return
        except OSError:
            self._drop(d, 'dropped_error')
            return
        c = self._counters[d]
        c['forwarded'] += 1
        c['bytes_forwarded'] += len(data)

    def _release_due(self, now):
        q = self._queue
        while q and q[0][0] <= now:
            _, _, d, flow, data = heapq.heappop(q)
            self._send(d, flow, data, now)
        for flow in list(self._flows.values()):
            for d in DIRS:
                h = flow.held[d]
                if h is not None and h[2] <= now:
                    flow.held[d] = None
                    self._count(d, 'reorder_timeouts')
                    self._emit(d, flow, h[0], h[1], now)

    def _expire_flows(self, now):
        if self.flow_idle_s is None:
            return
        for client, flow in list(self._flows.items()):
            if now - flow.last_active >= self.flow_idle_s:
                self._detach(flow)
                del self._flows[client]
                self._flows_expired += 1

    def _do_rebind(self, client):
        flows = list(self._flows.values()) if client is None else [self._flows[client]]
        changed = {}
        for flow in flows:
            new = self._new_upstream()   # old still open: the port must differ
            old_port = flow.port
            self._detach(flow)
            self._attach(flow, new)
            flow.rebinds += 1
            changed[flow.client] = (old_port, flow.port)
        self._rebinds += 1
        self._flows_rebound += len(flows)
        return changed

    def _close_all(self):
        for flow in list(self._flows.values()):
            self._detach(flow)
        self._flows.clear()
        self._queue.clear()
        for s in (self._listen, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        try:
            self._sel.close()
        except (OSError, RuntimeError):
            pass


# ------------------------------------------------------------------- CLI
def format_stats(s):
    lines = []
    for d in DIRS:
        for k in COUNTERS:
            lines.append('%s.%s=%d' % (d, k, s[d][k]))
    for k in ('rebinds', 'flows_rebound', 'flows', 'flows_created',
              'flows_expired', 'outages', 'queued'):
        lines.append('%s=%d' % (k, s[k]))
    return '\n'.join(lines)


def _cli_delay(text):
    lo, sep, hi = text.partition('-')
    return (float(lo), float(hi if sep else lo))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description='Impairing UDP proxy (loss, dup, reorder, delay, NAT rebinding, '
                    'outages) on 127.0.0.1.',
        epilog='Prints "listen=HOST:PORT" when ready. SIGUSR1: rebind now. '
               'SIGUSR2: toggle an outage. SIGTERM/SIGINT: stop and print counters.')
    ap.add_argument('--listen', default='127.0.0.1:0', help='HOST:PORT (default 127.0.0.1:0)')
    ap.add_argument('--upstream', required=True, help='server HOST:PORT')
    for name, helptext in (('loss', 'drop probability'), ('dup', 'duplication probability'),
                           ('reorder', 'reorder probability')):
        ap.add_argument('--' + name, type=float, default=0.0, help=helptext + ', both directions')
        ap.add_argument('--%s-up' % name, type=float, help='client -> server only')
        ap.add_argument('--%s-down' % name, type=float, help='server -> client only')
    ap.add_argument('--delay', type=_cli_delay, default=None, metavar='LO[-HI]',
                    help='delay in ms, uniform in [LO, HI], both directions')
    ap.add_argument('--delay-up', type=_cli_delay, metavar='LO[-HI]')
    ap.add_argument('--delay-down', type=_cli_delay, metavar='LO[-HI]')
    ap.add_argument('--reorder-hold-ms', type=float, default=1000.0)
    ap.add_argument('--rebind-every', type=float, default=None, metavar='SECONDS')
    ap.add_argument('--seed', default='0')
    ap.add_argument('--max-queue', type=int, default=4096)
    ap.add_argument('--max-flows', type=int, default=256)
    ap.add_argument('--flow-idle', type=float, default=None, metavar='SECONDS')
    ap.add_argument('--outage-at', type=float, nargs=2, action='append', default=[],
                    metavar=('START', 'SECONDS'),
                    help='an outage START seconds after startup (repeatable)')
    a = ap.parse_args(argv)

    def both(name):
        base = getattr(a, name)
        up = getattr(a, name + '_up')
        down = getattr(a, name + '_down')
        return {'up': base if up is None else up, 'down': base if down is None else down}

    bl = BadLink(listen=a.listen, upstream=a.upstream, loss=both('loss'), dup=both('dup'),
                 reorder=both('reorder'), delay_ms=both('delay'),
                 reorder_hold_ms=a.reorder_hold_ms, rebind_every=a.rebind_every,
                 seed=a.seed, max_queue=a.max_queue, max_flows=a.max_flows,
                 flow_idle_s=a.flow_idle)
    stop = threading.Event()
    timers = []

    def on_term(signum, frame):
        stop.set()

    def on_rebind(signum, frame):
        threading.Thread(target=lambda: bl.rebind(), daemon=True).start()

    def on_toggle(signum, frame):
        bl.set_down(not bl.is_down())

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_rebind)
    signal.signal(signal.SIGUSR2, on_toggle)
    for start, secs in a.outage_at:
        t = threading.Timer(start, bl.outage, (secs,))
        t.daemon = True
        t.start()
        timers.append(t)
    print('listen=%s:%d' % bl.listen_addr, flush=True)
    rc = 0
    try:
        while not stop.wait(0.5):
            if not bl.running:
                break
    finally:
        for t in timers:
            t.cancel()
        try:
            bl.stop()
        except RuntimeError as e:
            print('badlink: %s' % e, file=sys.stderr)
            rc = 1
        print(format_stats(bl.stats()), flush=True)
    return rc


if __name__ == '__main__':
    sys.exit(main())

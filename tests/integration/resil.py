#!/usr/bin/env python3
"""resil: helpers for the resilience tests (test_lossy_link.py,
test_rebinding.py, test_flood.py, test_reload_under_traffic.py) and for
figures.py.  Python 3 stdlib only, 127.0.0.0/8 only.

  * RetryMeter: a meter that asks and, like a real meter (or CoAP), sends
    the same request again when no answer came within `every` seconds, up
    to a bound; it records every answer and when it came.
  * run_meters(): several RetryMeters on threads at once.
  * kill_and_restart() / graceful_restart(): a harness Daemon stopped
    (SIGKILL or SIGTERM) and started again on the same configuration and port.
  * rss_kib(), udp_drops(), udp_rx_queue(): /proc readings for the memory
    and kernel-drop checks; wait_drained(): until a daemon read all sent to it.
  * A minimal DTLS 1.2 ClientHello builder and HelloVerifyRequest parser
    (record and handshake headers, PSK-AES128-CCM8), for forged and
    cookie-answering ClientHellos.
  * DatagramCounter: a transparent UDP proxy that records every datagram
    (direction, size, DTLS record content types, handshake message types),
    to count handshake bytes and datagrams on the wire.
"""

import math
import os
import selectors
import signal
import socket
import statistics
import struct
import threading
import time

import harness as h

# ----------------------------------------------------------------- meters


class RetryMeter:
    """A plain UDP meter with its own retry-on-timeout.  ask() sends a
    request and resends it every `every` s until its answer (prefix +
    request) arrives or `tries` sends went unanswered.  Every datagram that
    arrives is kept in `got` (payload, monotonic time)."""

    def __init__(self, env, name, bind=h.LO, prefix=b'E:'):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((bind, 0))
        env.defer(self.sock.close)
        self.port = self.sock.getsockname()[1]
        self.source = '%s:%d' % (bind, self.port)
        self.prefix = prefix
        self.got = []          # (payload, t)
        self.results = []      # dict(payload, answered, tries, t_sent, t_answer)

    def _recv_until(self, deadline, want):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                d, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                return False
            except ConnectionRefusedError:
                continue
            now = time.monotonic()
            self.got.append((d, now))
            if d == want:
                return now

    def ask(self, payload, to, every=1.0, tries=10):
        host, port = to.rsplit(':', 1)
        want = self.prefix + payload
        t0 = time.monotonic()
        n = 0
        t_ans = False
        while n < tries and not t_ans:
            n += 1
            try:
                self.sock.sendto(payload, (host, int(port)))
            except OSError as e:   # e.g. ECONNREFUSED from an earlier ICMP error
                h.log('%s: send: %r' % (self.name, e))
            t_ans = self._recv_until(time.monotonic() + every, want)
        r = dict(payload=payload, answered=bool(t_ans), tries=n, t_sent=t0,
                 t_answer=t_ans or None, latency=(t_ans - t0) if t_ans else None)
        self.results.append(r)
        if not t_ans:
            h.log('%s: %r unanswered after %d tries' % (self.name, payload, n))
        return r

    def drain(self, quiet_s=0.0):
        """Take what already arrived (non-blocking, or wait quiet_s for more)."""
        self.sock.settimeout(quiet_s if quiet_s > 0 else 0.0001)
        try:
            while True:
                d, _ = self.sock.recvfrom(65535)
                self.got.append((d, time.monotonic()))
        except (socket.timeout, BlockingIOError, ConnectionRefusedError):
            pass

    def answers(self):
        return {d for d, _ in self.got}

    def sent(self):
        return [r['payload'] for r in self.results]


def run_meters(meters, to, n_requests=None, every=1.0, tries=10, interval=0.0,
               stop=None, tag=b''):
    """Each meter asks n_requests times (or until stop.is_set()) on its own
    thread, waiting `interval` s between requests; returns when all are done."""
    errors = []

    def worker(m):
        try:
            i = 0
            while (n_requests is None or i < n_requests) and not (stop and stop.is_set()):
                m.ask(b'%s/%s%d' % (m.name.encode(), tag, i), to, every, tries)
                i += 1
                if interval and not (stop and stop.is_set()):
                    if stop:
                        stop.wait(interval)
                    else:
                        time.sleep(interval)   # the meter's own pace, not a wait for a condition
        except Exception as e:      # reported by the caller
            errors.append('%s: %r' % (m.name, e))

    threads = [threading.Thread(target=worker, args=(m,), daemon=True) for m in meters]
    for t in threads:
        t.start()
    return threads, errors


def join_all(threads, errors, timeout):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if alive:
        raise h.Fail('%d meter thread(s) still running after %.0fs' % (len(alive), timeout))
    if errors:
        raise h.Fail('meter thread errors: %s' % '; '.join(errors))


def check_all_answered(meters):
    """Every request answered, and what came back is exactly the set of
    prefix + request (duplicates allowed: a retried request may be answered twice)."""
    for m in meters:
        lost = [r['payload'] for r in m.results if not r['answered']]
        if lost:
            raise h.Fail('%s: %d request(s) never answered: %r' % (m.name, len(lost), lost[:5]))
        m.drain()
        h.eq(m.answers(), {m.prefix + p for p in m.sent()}, '%s: set of answers' % m.name)


def summary(meters):
    rs = [r for m in meters for r in m.results]
    n = len(rs)
    first = sum(1 for r in rs if r['answered'] and r['tries'] == 1)
    ok = sum(1 for r in rs if r['answered'])
    sends = sum(r['tries'] for r in rs)
    return dict(requests=n, first_try=first, answered=ok, sends=sends)


def pct(a, b):
    return 100.0 * a / b if b else 0.0


def stats_line(xs, unit='s', scale=1.0):
    if not xs:
        return 'n=0'
    xs = sorted(x * scale for x in xs)
    p90 = xs[max(0, math.ceil(0.9 * len(xs)) - 1)]      # nearest rank
    return 'n=%d median %.2f%s, p90 %.2f%s, max %.2f%s' % (
        len(xs), statistics.median(xs), unit, p90, unit, xs[-1], unit)


# ----------------------------------------------------------------- daemons


def _reap(d):
    d.proc.wait(10)
    d.err.thread.join(2)
    d.logfile.close()


def kill_and_restart(d, down_s=0.0, timeout=h.T):
    """kill -9 the daemon and, down_s seconds later (the length of the
    outage: a fixed time on purpose), start it again on the same
    configuration and port.  Returns (t_killed, t_ready)."""
    os.killpg(d.proc.pid, signal.SIGKILL)
    t_killed = time.monotonic()
    _reap(d)
    h.log('%s: killed (SIGKILL), exit %r; restarting in %.1fs' % (d.name, d.proc.returncode, down_s))
    d.rc = None
    left = t_killed + down_s - time.monotonic()
    if left > 0:
        time.sleep(left)
    d.start(timeout)
    return t_killed, time.monotonic()


def graceful_stop(d, timeout=h.T):
    h.eq(d.terminate(timeout), 0, '%s exit code after SIGTERM' % d.name)
    d.rc = None
    return time.monotonic()


def restart(d, not_before=None, timeout=h.T):
    """Start a stopped daemon again (at monotonic time not_before at the earliest)."""
    if not_before is not None and not_before > time.monotonic():
        time.sleep(not_before - time.monotonic())     # the outage's length, on purpose
    d.start(timeout)
    return time.monotonic()


# ----------------------------------------------------------------- /proc


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise h.Fail('no VmRSS for pid %d' % pid)


def is_asan(pid):
    try:
        with open('/proc/%d/maps' % pid) as f:
            return any('libasan' in line for line in f)
    except OSError:
        return False


def _proc_udp_table():
    fd = os.open('/proc/net/udp', os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return b''.join(chunks).splitlines()[1:]
            chunks.append(b)
    finally:
        os.close(fd)


def _proc_udp_socket(port):
    """The fields of the /proc/net/udp line of the socket bound to
    127.0.0.1:port.  The kernel hands the table out a page at a time and
    walks it anew for each page, counting lines from the start: when other
    sockets close meanwhile (a busy machine, the flood's own sockets), a line
    is skipped.  A socket missing from one reading is read again (it was
    missed: it is ours and open); it is never taken for zero drops."""
    want = b'0100007F:%04X' % port
    found = []

    def read():
        for line in _proc_udp_table():
            fs = line.split()
            if fs[1] == want:
                found.append(fs)
                return True
        return False
    h.await_condition(read, 'UDP socket 127.0.0.1:%d in /proc/net/udp' % port, interval=0.001)
    return found[-1]


def udp_rx_queue(port):
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:port."""
    return int(_proc_udp_socket(port)[4].split(b':')[1], 16)


def wait_drained(d, port, what='socket drained'):
    """Until daemon d has read everything that was sent to its UDP socket on
    `port`: the kernel's receive queue is empty, then one psktunctl round trip
    (answered by the loop after the batch it had read).  Returns its stats:
    every datagram sent before the call is in them, or in the kernel's drops.
    Single-loop daemons only (a worker's loop answers no control client)."""
    h.await_condition(lambda: udp_rx_queue(port) == 0, '%s: %s' % (d.name, what))
    return d.stats()


def session_field(d, identity, field):
    """A counter of daemon d's session for `identity` (from psktunctl sessions)."""
    for s in d.sessions():
        if s.get('identity') == identity:
            return int(s[field])
    raise h.Fail('%s: no session for %s' % (d.name, identity))


def udp_drops(port):
    """The kernel's receive-drop count of the UDP socket bound to 127.0.0.1:port
    (datagrams that found its receive queue full)."""
    n = int(_proc_udp_socket(port)[-1])
    h.log('udp_drops(%d) = %d' % (port, n))
    return n


def backlog_drops():
    """Datagrams the kernel dropped before any socket, machine-wide: the
    per-CPU input backlog was full (/proc/net/softnet_stat, second column).
    Loopback traffic passes that queue too; on a busy machine it can overflow."""
    with open('/proc/net/softnet_stat') as f:
        n = sum(int(line.split()[1], 16) for line in f)
    h.log('backlog_drops() = %d' % n)
    return n


# ----------------------------------------------------------------- DTLS


CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_HELLO_VERIFY = 1, 2, 3
PSK_AES128_CCM8 = 0xC0A8
SCSV_RENEGO = 0x00FF


EXT_EXTENDED_MASTER_SECRET = b'\x00\x17\x00\x00'   # RFC 7627, empty


def client_hello(random_=None, cookie=b'', msg_seq=0, rec_seq=0, session_id=b'',
                 suites=(PSK_AES128_CCM8, SCSV_RENEGO), extensions=b''):
    """One DTLS 1.2 ClientHello in one record (by default no extensions: a
    PSK handshake needs none; a GnuTLS server resumes a session that used
    the extended master secret only with EXT_EXTENDED_MASTER_SECRET)."""
    random_ = random_ if random_ is not None else os.urandom(32)
    body = b'\xfe\xfd' + random_
    body += bytes([len(session_id)]) + session_id
    body += bytes([len(cookie)]) + cookie
    cs = b''.join(struct.pack('!H', s) for s in suites)
    body += struct.pack('!H', len(cs)) + cs
    body += b'\x01\x00'                  # one compression method: null
    if extensions:
        body += struct.pack('!H', len(extensions)) + extensions
    n = len(body)
    hs = bytes([HS_CLIENT_HELLO]) + n.to_bytes(3, 'big') + struct.pack('!H', msg_seq) + \
        (0).to_bytes(3, 'big') + n.to_bytes(3, 'big') + body
    return bytes([CT_HANDSHAKE]) + b'\xfe\xfd' + b'\x00\x00' + rec_seq.to_bytes(6, 'big') + \
        struct.pack('!H', len(hs)) + hs


def records(dgram):
    """[(content type, epoch, first handshake msg type or None, record length)]"""
    out, i = [], 0
    while i + 13 <= len(dgram):
        ct = dgram[i]
        epoch = struct.unpack('!H', dgram[i + 3:i + 5])[0]
        ln = struct.unpack('!H', dgram[i + 11:i + 13])[0]
        hs = dgram[i + 13] if ct == CT_HANDSHAKE and epoch == 0 and ln > 0 else None
        out.append((ct, epoch, hs, 13 + ln))
        i += 13 + ln
    return out


def hello_verify_cookie(dgram):
    """The cookie of a HelloVerifyRequest datagram, else None."""
    if len(dgram) < 13 + 12 + 3 or dgram[0] != CT_HANDSHAKE or dgram[13] != HS_HELLO_VERIFY:
        return None
    body = dgram[25:]
    n = body[2]
    return body[3:3 + n]


# ----------------------------------------------------------------- counting proxy


class DatagramCounter:
    """A transparent UDP relay (client side: one upstream socket per client
    address) that records every datagram it relays:
    (t, 'up'|'down', size, records(datagram))."""

    def __init__(self, upstream, upstream_bind=h.LO, keep_data=False):
        self.upstream = upstream
        self.upstream_bind = upstream_bind   # each flow's source address toward upstream
        self.data = [] if keep_data else None   # (direction, datagram), with keep_data
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((h.LO, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.addr = '%s:%d' % (h.LO, self.port)
        self.log = []
        self.lock = threading.Lock()
        self.flows = {}
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _record(self, d, data):
        with self.lock:
            self.log.append((time.monotonic(), d, len(data), records(data)))
            if self.data is not None:
                self.data.append((d, bytes(data)))

    def _run(self):
        while not self._stop:
            for key, _ in self.sel.select(0.05):
                if key.data is None:
                    try:
                        data, client = self.sock.recvfrom(65535)
                    except (BlockingIOError, OSError):
                        continue
                    up = self.flows.get(client)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.bind((self.upstream_bind, 0))
                        up.connect(self.upstream)
                        up.setblocking(False)
                        self.flows[client] = up
                        self.sel.register(up, selectors.EVENT_READ, client)
                    self._record('up', data)
                    try:
                        up.send(data)
                    except OSError:
                        pass
                else:
                    try:
                        data = key.fileobj.recv(65535)
                    except (BlockingIOError, OSError):
                        continue
                    self._record('down', data)
                    try:
                        self.sock.sendto(data, key.data)
                    except OSError:
                        pass

    def mark(self):
        with self.lock:
            return len(self.log)

    def since(self, mark):
        with self.lock:
            return list(self.log[mark:])

    def close(self):
        self._stop = True
        self.thread.join(2)
        for s in self.flows.values():
            s.close()
        self.sock.close()
        self.sel.close()


def handshake_cost(entries):
    """Bytes and datagrams of the handshake in a slice of DatagramCounter.log:
    every datagram that carries no application data and no alert (so the
    close_notify of an idle close is not counted), split by direction; also
    whether a HelloVerifyRequest was seen and the round trips (direction changes)."""
    hs = [e for e in entries if e[3] and all(r[0] in (CT_HANDSHAKE, CT_CCS) for r in e[3])]
    up = [e for e in hs if e[1] == 'up']
    down = [e for e in hs if e[1] == 'down']
    hvr = any(r[2] == HS_HELLO_VERIFY for e in hs for r in e[3])
    flights, last = 0, None
    for e in hs:
        if e[1] != last:
            flights += 1
            last = e[1]
    return dict(datagrams=len(hs), bytes=sum(e[2] for e in hs),
                up=(len(up), sum(e[2] for e in up)), down=(len(down), sum(e[2] for e in down)),
                cookie=hvr, flights=flights)

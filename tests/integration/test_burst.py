#!/usr/bin/env python3
"""A burst from every meter at once loses nothing silently (issue 15).

After a power cut every meter behind a router reports at once.  Here
N_METERS meters (each its own socket, a `meters` entry each) send one
datagram each, all at once, through gateway -> terminator -> echo, and never
send it again.  Every first datagram is either answered or counted by the
gateway as dropped_kernel (the kernel dropped it on the shared socket):
answered + dropped_kernel == N_METERS exactly, and dropped_kernel is what
the kernel reports for that socket in /proc/net/udp.

And the counter itself, deterministically: the gateway is stopped
(SIGSTOP) while its plaintext port is flooded until the kernel drops;
after SIGCONT dropped_kernel must equal the kernel's drop count for the
socket, and every datagram sent is either read (plain_in) or counted.
Then a reload hands the socket to a new tunnel (renamed):
the drops of a second flood are counted once, on from the first.

Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import resource
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import resil  # noqa: E402
from harness import eq, Fail  # noqa: E402

N_METERS = int(os.environ.get('PSKTUN_BURST_METERS', '3000'))
BURST_DEADLINE_S = 90      # generous: a busy 2-core machine, sanitizers


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise h.Skip('RLIMIT_NOFILE hard limit %d < %d descriptors needed' % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def proc_udp_drops(port):
    """The kernel's drop count for the UDP socket bound to 127.0.0.1:port. A
    line /proc/net/udp skips while other sockets close (a busy machine: this
    test's own 3,000) is read again, never taken for "no socket"."""
    return int(resil._proc_udp_socket(port)[-1])


def wait_stopped(pid):
    def stopped():
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('T', 't')
    h.wait_until(stopped, what='pid %d stopped' % pid)


def test_burst_every_first_datagram_answered_or_counted(env):
    h.psktund()
    raise_nofile(2 * N_METERS + 200)   # the meters here; each daemon its own process
    keys = {'m%05d' % i: os.urandom(16) for i in range(N_METERS)}
    socks = []
    for _ in range(N_METERS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        env.defer(s.close)
        s.bind((h.LO, 0))
        s.setblocking(False)
        socks.append(s)
    meters = [(ident, '%s:%d' % (h.LO, s.getsockname()[1])) for ident, s in zip(keys, socks)]
    echo = env.echo()
    # The gateway's default settings but for retransmit_ms (harness: 500 ms),
    # so that a flight the loopback loses costs half a second, not nine. The
    # terminator's per-source handshake_rate off: this gateway is its one source.
    term = h.terminator(env, keys, echo.addr, verbose=0,
                        dtls={'retransmit_ms': 500, 'handshake_rate': 0})
    gw = h.gateway(env, keys, meters, term.addr, verbose=0)
    to = (h.LO, gw.port)
    payload = {}
    for i, s in enumerate(socks):
        payload[s.fileno()] = b'first/%05d' % i
    # all at once: nothing is read before the last one is sent
    sends = [(s.sendto, payload[s.fileno()]) for s in socks]
    t0 = time.monotonic()
    for send, data in sends:
        send(data, to)
    h.log('%d datagrams sent in %.1f ms' % (N_METERS, 1000 * (time.monotonic() - t0)))
    poller = select.epoll()
    env.defer(poller.close)
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    answered = set()
    wrong = []
    dropped = 0
    deadline = time.monotonic() + BURST_DEADLINE_S
    next_stats = 0.0
    while time.monotonic() < deadline:
        for fd, _ in poller.poll(0.05):
            sock = socks_by_fd(socks, fd)
            while True:
                try:
                    data, src = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if src != to:
                    # the port may have been another test's a moment ago
                    h.log('ignored %d bytes from %s:%d' % (len(data), src[0], src[1]))
                elif data == payload[fd]:
                    answered.add(fd)
                else:
                    wrong.append(data)
        if time.monotonic() >= next_stats:
            dropped = gw.stats().get('dropped_kernel', 0)
            next_stats = time.monotonic() + 0.5
            if len(answered) + dropped >= N_METERS:
                break
    st = gw.stats()
    st.setdefault('dropped_kernel', 0)
    h.log('burst of %d: %d answered, gateway dropped_kernel %d (kernel: %d), terminator '
          'dropped_kernel %s' % (N_METERS, len(answered), st['dropped_kernel'],
                                 proc_udp_drops(gw.port), term.stats().get('dropped_kernel')))
    eq(wrong, [], 'datagrams from the gateway that are not the echo of what the meter sent')
    eq(len(answered) + st['dropped_kernel'], N_METERS,
       'first datagrams answered + counted as dropped_kernel')
    eq(st['dropped_kernel'], proc_udp_drops(gw.port), "dropped_kernel vs /proc/net/udp's drops")
    eq(st['plain_in'], N_METERS - st['dropped_kernel'], 'plain_in: every datagram not dropped was read')
    eq(st['handshakes_completed'], len(answered), 'gateway handshakes_completed')
    # a loop iteration's sends beyond the io_uring slots are submitted early, not dropped
    eq((st.get('dropped_ring', 0), term.stats().get('dropped_ring', 0)), (0, 0),
       'dropped_ring: gateway, terminator')


def socks_by_fd(socks, fd, _cache={}):
    if not _cache:
        _cache.update((s.fileno(), s) for s in socks)
    return _cache[fd]


def flood_until_drops(sock, to, port, proc_drops_before):
    """With the daemon stopped: send until the kernel drops (then a little more); returns sent."""
    data = os.urandom(200)
    sent = 0
    while True:
        for _ in range(500):
            sock.sendto(data, to)
            sent += 1
        now = proc_udp_drops(port)
        if now - proc_drops_before >= 100:
            return sent
        if sent > 2000000:
            raise Fail('no kernel drop after %d datagrams at a stopped daemon' % sent)


def test_kernel_drops_counted_exactly(env):
    h.psktund()
    keys = {'meter-1': os.urandom(16)}
    backend = env.udp()
    backend_addr = '%s:%d' % (h.LO, backend.getsockname()[1])
    gw = h.gateway(env, keys, [], backend_addr, verbose=0)
    pid = gw.proc.pid
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    env.defer(flood.close)
    flood.bind((h.LO, 0))
    to = (h.LO, gw.port)
    eq(gw.stats()['dropped_kernel'], 0, 'dropped_kernel at start')
    total_sent = 0
    for round_ in (1, 2):
        before = proc_udp_drops(gw.port)
        gw.proc.send_signal(signal.SIGSTOP)
        try:
            wait_stopped(pid)
            total_sent += flood_until_drops(flood, to, gw.port, before)
        finally:
            gw.proc.send_signal(signal.SIGCONT)
        kernel = proc_udp_drops(gw.port)
        # nothing comes after the last dropped datagram: the count must not wait for one
        h.wait_until(lambda: gw.stats()['dropped_kernel'] == kernel, 30,
                     'dropped_kernel == %d (the kernel\'s drops)' % kernel)
        st = gw.stats()
        h.log('round %d: sent %d in all, kernel drops %d, dropped_kernel %d, plain_in %d'
              % (round_, total_sent, kernel, st['dropped_kernel'], st['plain_in']))
        h.wait_until(lambda: gw.stats()['plain_in'] + kernel == total_sent, 30,
                     'plain_in + dropped_kernel == %d sent' % total_sent)
        eq(gw.stats()['dropped_unknown'], total_sent - kernel, 'dropped_unknown (unknown sources)')
        if round_ == 1:
            # A reload that replaces the tunnel (another name) hands the socket
            # over: the new tunnel counts on from the old one's count.
            gw.tunnels = [dict(gw.tunnels[0], name='t2')]
            gw.write()
            eq(gw.reload(), 'configuration reloaded', 'reload')
            eq(gw.stats()['dropped_kernel'], kernel, 'dropped_kernel after the reload')


if __name__ == '__main__':
    h.main(globals())

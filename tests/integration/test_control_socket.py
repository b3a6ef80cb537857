#!/usr/bin/env python3
"""The control socket: a client that hangs up before reading its answer never
kills psktund (no SIGPIPE, either role, with workers, in the foreground or as a
daemon); one control path serves one daemon: a second daemon refuses to start
while the first answers there, a stale socket is replaced, a daemon removes at
exit only the socket it created, and a missing directory is named as such.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402

KEYS = {'meter-0001': bytes(range(16))}
ROUNDS = 25       # of BATCH hang-ups per command; the first used to kill the daemon
BATCH = 8         # clients waiting in the listen backlog (psktund listens with 8)


def ask(path, command):
    """The daemon's whole answer to one command (b'' if it hung up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(h.T)
    try:
        s.connect(path)
        s.sendall(command)
        out = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def answers(path, alive):
    """Until the daemon answers `stats` (True) or is dead (False). Its backlog
    may be full (EAGAIN) or it may be busy for a moment, hanging up (ECONNRESET)."""
    deadline = time.monotonic() + h.T
    while alive() and time.monotonic() < deadline:
        try:
            if b'sessions=0\n' in ask(path, b'stats\n'):
                return True
        except OSError as e:
            h.log('stats probe: %r' % e)
        time.sleep(0.02)
    return False


def hang_up_many(path, pid, alive):
    """Rounds of BATCH clients that connect, send the command and close, all
    while the daemon is stopped (SIGSTOP): each answer then goes to a closed
    socket (EPIPE), every time, not only when the client wins a race."""
    for command in (b'stats\n', b'sessions\n'):
        for i in range(ROUNDS):
            os.kill(pid, signal.SIGSTOP)
            try:
                for _ in range(BATCH):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(h.T)
                    try:
                        s.connect(path)
                        s.sendall(command)
                    finally:
                        s.close()
            finally:
                os.kill(pid, signal.SIGCONT)
            if not answers(path, alive):
                if alive():
                    raise h.Fail('psktund stopped answering after %d %r clients that hung up'
                                 % ((i + 1) * BATCH, command))
                raise h.Fail('psktund died after %d %r clients that hung up' % ((i + 1) * BATCH, command))


def answers_stats(path):
    """psktunctl stats, then sessions: the daemon has written (or tried to) every
    answer to the clients before, `sessions` ones gathered from the workers included."""
    r = subprocess.run([h.psktunctl(), '-s', path, 'stats'], capture_output=True, timeout=10)
    if r.returncode != 0 or 'sessions=0' not in r.stdout.decode().splitlines():
        return False
    r = subprocess.run([h.psktunctl(), '-s', path, 'sessions'], capture_output=True, timeout=10)
    return r.returncode == 0 and r.stdout == b''


def foreground_survives(d):
    def alive():
        return d.running()
    hang_up_many(d.control, d.proc.pid, alive)
    if not alive():
        raise h.Fail('%s exited %r' % (d.name, d.proc.returncode))
    h.wait_until(lambda: answers_stats(d.control), what='%s answers psktunctl stats' % d.name)
    if not alive():
        raise h.Fail('%s exited %r' % (d.name, d.proc.returncode))
    print('%s: alive and answering after %d hang-ups' % (d.name, 2 * ROUNDS * BATCH), flush=True)


def test_clients_that_hang_up_do_not_kill_a_terminator(env):
    h.psktund()
    foreground_survives(h.terminator(env, KEYS, '127.0.0.1:%d' % h.free_udp_port()))


def test_clients_that_hang_up_do_not_kill_a_terminator_with_workers(env):
    h.psktund()
    foreground_survives(h.terminator(env, KEYS, '127.0.0.1:%d' % h.free_udp_port(),
                                     extra='workers = 2;'))


def test_clients_that_hang_up_do_not_kill_a_gateway(env):
    h.psktund()
    foreground_survives(h.gateway(env, KEYS, [('meter-0001', '127.0.0.1:40001')],
                                  '127.0.0.1:%d' % h.free_udp_port()))


def peer_pid(path):
    """The pid of the process listening on a unix socket (SO_PEERCRED)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize('3i'))
        return struct.unpack('3i', cred)[0]
    finally:
        s.close()


def pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_clients_that_hang_up_do_not_kill_a_daemonized_gateway(env):
    """Without -f: the daemon's own signal dispositions (procd sets none)."""
    h.psktund()
    d = h.Daemon(env, 'gateway', 'gateway',
                 [dict(name='t1', accept='127.0.0.1:%d' % h.free_udp_port(),
                       connect='127.0.0.1:%d' % h.free_udp_port())],
                 KEYS, meters=[('meter-0001', '127.0.0.1:40001')])
    r = subprocess.run([h.psktund(), '-c', d.conf], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
    eq(r.returncode, 0, 'psktund (daemonizing) exit code')
    pid = h.wait_until(lambda: peer_pid(d.control), what='the daemon listening on its control socket')

    def stop():
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            h.wait_until(lambda: not pid_alive(pid), what='daemon %d gone after SIGTERM' % pid)
    env.defer(stop)
    hang_up_many(d.control, pid, lambda: pid_alive(pid))
    h.wait_until(lambda: answers_stats(d.control), what='the daemon answers psktunctl stats')
    if not pid_alive(pid):
        raise h.Fail('the daemon died')
    print('daemon %d: alive and answering after %d hang-ups' % (pid, 2 * ROUNDS * BATCH), flush=True)


def _second(env, first, control=None):
    """A second daemon (another tunnel port) whose control path is `control` (default: first's)."""
    d = h.Daemon(env, 'second', first.mode,
                 [dict(name='t1', accept='127.0.0.1:%d' % h.free_udp_port(),
                       connect='127.0.0.1:%d' % h.free_udp_port())], KEYS)
    d.control = control or first.control
    d.write()
    return d


def test_a_second_daemon_on_the_same_control_path_refuses_to_start(env):
    h.psktund()
    first = h.terminator(env, KEYS, '127.0.0.1:%d' % h.free_udp_port())
    second = _second(env, first)
    try:
        r = subprocess.run([h.psktund(), '-f', '-c', second.conf], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
    except subprocess.TimeoutExpired:
        raise h.Fail('the second daemon started (it ran for 10 s) instead of refusing')
    err = r.stderr.decode()
    h.log('second daemon -> %d:\n%s' % (r.returncode, err))
    eq(r.returncode, 1, 'second daemon exit code')
    want = 'control socket %s: another psktund answers there' % first.control
    if want not in err:
        raise h.Fail('want %r in the second daemon\'s log, got:\n%s' % (want, err))
    if ' ready' in err:
        raise h.Fail('the second daemon said ready:\n%s' % err)
    eq(first.stats()['sessions'], 0, 'the first daemon still answers on its socket')


def test_a_stale_control_socket_is_replaced(env):
    h.psktund()
    d = h.Daemon(env, 'term', 'terminator',
                 [dict(name='t1', accept='127.0.0.1:%d' % h.free_udp_port(),
                       connect='127.0.0.1:%d' % h.free_udp_port())], KEYS)
    env.defer(d.stop)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(d.control)       # what a crashed daemon leaves: a socket nobody listens on
    s.close()
    d.start()
    eq(d.stats()['sessions'], 0, 'the daemon answers on the replaced socket')


def test_a_daemon_removes_only_the_socket_it_created(env):
    h.psktund()
    d = h.terminator(env, KEYS, '127.0.0.1:%d' % h.free_udp_port())
    # Another program took the path over (as a second daemon would once the
    # first's socket was gone): psktund's exit must leave its socket alone.
    os.unlink(d.control)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    env.defer(other.close)
    other.bind(d.control)
    other.listen(1)
    ino = os.stat(d.control).st_ino
    eq(d.terminate(), 0, 'exit code after SIGTERM')
    if not os.path.exists(d.control):
        raise h.Fail('psktund removed %s, which another program had bound' % d.control)
    eq(os.stat(d.control).st_ino, ino, 'inode of the other program\'s socket')
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(d.control)
    c.close()


def test_a_daemon_removes_its_own_socket_at_exit(env):
    h.psktund()
    d = h.terminator(env, KEYS, '127.0.0.1:%d' % h.free_udp_port())
    eq(d.terminate(), 0, 'exit code after SIGTERM')
    if os.path.exists(d.control):
        raise h.Fail('%s is still there after exit' % d.control)


def test_a_missing_control_directory_is_named(env):
    h.psktund()
    d = h.Daemon(env, 'term', 'terminator',
                 [dict(name='t1', accept='127.0.0.1:%d' % h.free_udp_port(),
                       connect='127.0.0.1:%d' % h.free_udp_port())], KEYS)
    missing = env.path('no-such-dir')
    d.control = os.path.join(missing, 'control')
    d.write()
    r = subprocess.run([h.psktund(), '-f', '-c', d.conf], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    err = r.stderr.decode()
    h.log('psktund -> %d:\n%s' % (r.returncode, err))
    eq(r.returncode, 1, 'exit code')
    want = 'control socket %s: the directory %s does not exist' % (d.control, missing)
    if want not in err:
        raise h.Fail('want %r, got:\n%s' % (want, err))


if __name__ == '__main__':
    h.main(globals())

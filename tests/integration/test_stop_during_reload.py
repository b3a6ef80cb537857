#!/usr/bin/env python3
"""SIGTERM with a reload in flight, `workers = 2`.

A reload reads the configuration and the key file on a thread of its own at
nice +10 (agent/lowprio.c): the leader's first, then the worker's (`workers = 2`: the leader and one
worker), and the leader commits when the worker has acked. A stop that comes while one of
those reads runs abandons it: the daemon exits as soon as the read is done
(no ack is awaited), and a `reload` client still waiting is told the reload
failed because psktund is stopping, rather than being hung up on.

The key file is big enough (PSKTUN_STOP_RELOAD_KEYS, default 300,000) that a
read takes a good fraction of a second; the phase is found by counting the
daemon's threads at nice +10 in /proc (a new thread for each read: the
first is the leader's, the second the worker's), never by sleeping.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from test_reload_million_keys import _write_big_keys  # noqa: E402
from test_control_socket import ask  # noqa: E402

N_KEYS = int(os.environ.get('PSKTUN_STOP_RELOAD_KEYS', '300000'))
LOWPRIO_NICE = 10       # PSKTUN_LOWPRIO_NICE
EXIT_CAP = 60           # generous: the read in flight ends first (ASan, a busy machine)


def _nice(pid, tid):
    """A thread's nice value: field 19 of its stat, the 17th after the name."""
    with open('/proc/%d/task/%s/stat' % (pid, tid)) as f:
        return int(f.read().rsplit(')', 1)[1].split()[16])


def _lowprio_threads(pid):
    """pid's threads that run 10 above its main thread's nice: a reload's
    reads (a thread each, never reused), and the old keys freed at commit."""
    base, tids = _nice(pid, pid), set()
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            if _nice(pid, tid) == base + LOWPRIO_NICE:
                tids.add(tid)
        except OSError:
            pass                # the thread ended meanwhile
    return tids


def _terminator_with_many_keys(env):
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.Daemon(env, 'terminator', 'terminator',
                    [dict(name='t1', accept='%s:%d' % (h.LO, h.free_udp_port()), connect=echo.addr)],
                    {'meter-0001': os.urandom(16)}, extra='workers = 2;')
    _write_big_keys(term.keyfile, term.keys['meter-0001'], N_KEYS)
    env.defer(term.stop)
    term.start(timeout=120)
    h.wait_until(lambda: 'worker 1 ready' in term.log_text(), h.T, 'worker 1 ready')
    return term


class ReloadClient:
    """A raw `reload` client on the control socket (the line psktunctl
    sends), on a thread: its answer, b'' if hung up on, once done()."""

    def __init__(self, term):
        self.got = []
        self.th = threading.Thread(target=lambda: self.got.append(ask(term.control, b'reload\n')), daemon=True)
        self.th.start()

    def done(self):
        self.th.join(EXIT_CAP)
        if not self.got:
            raise Fail('the reload client had no answer within %d s' % EXIT_CAP)
        return self.got[0]


def _say(line):
    print(line, flush=True)
    h.log(line)


def _stop_in_phase(term, nth, what):
    """SIGTERM while the `nth` read runs (1: the leader's; 2: the worker's,
    which follows it; the old keys are freed only after both); returns the
    seconds from SIGTERM to exit."""
    pid, seen = term.proc.pid, set()

    def nth_runs():
        now = _lowprio_threads(pid)
        seen.update(now)
        return len(seen) >= nth and now

    h.await_condition(nth_runs, what, timeout=120, interval=0.002)
    eq(len(seen), nth, 'reads started when SIGTERM goes')
    t0 = time.monotonic()
    eq(term.terminate(timeout=EXIT_CAP), 0, 'exit code after SIGTERM during %s' % what)
    return time.monotonic() - t0


def test_sigterm_while_the_worker_reads_answers_the_client_and_exits(env):
    term = _terminator_with_many_keys(env)
    c = ReloadClient(term)
    took = _stop_in_phase(term, 2, "the worker's read")
    eq(c.done(), b'error=reload failed: psktund is stopping\n', 'the reload client\'s answer')
    term.wait_log(r'reload abandoned: psktund is stopping')
    if 'configuration reloaded' in term.log_text():
        raise Fail('a reload completed after SIGTERM')
    _say('exit %.2f s after SIGTERM, the worker reading %d keys' % (took, N_KEYS))


def test_sigterm_while_the_leader_reads_answers_psktunctl_and_exits(env):
    term = _terminator_with_many_keys(env)
    ctl = subprocess.Popen([h.psktunctl(), '-s', term.control, 'reload'], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    env.defer(ctl.kill)
    took = _stop_in_phase(term, 1, "the leader's read")
    out, err = ctl.communicate(timeout=EXIT_CAP)
    eq((ctl.returncode, out, err), (1, b'', b'psktunctl: reload failed: psktund is stopping\n'),
       'psktunctl reload: exit code, stdout, stderr')
    term.wait_log(r'reload abandoned: psktund is stopping')
    _say('exit %.2f s after SIGTERM, the leader reading %d keys' % (took, N_KEYS))


def test_sighup_then_sigterm_at_once_exits(env):
    """No client: the reload SIGHUP started is abandoned, and said to be."""
    term = _terminator_with_many_keys(env)
    term.proc.send_signal(signal.SIGHUP)
    took = _stop_in_phase(term, 1, "the leader's read after SIGHUP")
    term.wait_log(r'reload abandoned: psktund is stopping')
    _say('exit %.2f s after SIGTERM (SIGHUP just before), the leader reading %d keys' % (took, N_KEYS))


if __name__ == '__main__':
    h.main(globals())

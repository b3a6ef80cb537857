#!/usr/bin/env python3
"""harness: the loopback integration tests' toolbox (Python 3 stdlib only).

Every test file is a small program: it defines functions named test_*, and
ends with `harness.main(globals())`, which runs each of them in a fresh
Env (a temp dir plus a stack of cleanups that runs even when the test
fails) and exits 0 (all passed), 1 (one failed) or 77 (all skipped), as
automake's test driver expects.

What is here:
  * free UDP ports on 127.0.0.1 (nothing here ever uses another address);
  * writers for a psktund configuration (libconfig) and key file (0600);
  * Daemon: starts `psktund -f -c FILE -v`, waits for its `ready` line,
    reads `psktunctl stats|sessions`, reloads, stops it with SIGTERM and
    asserts exit code 0;
  * Peer: a third-party program (openssl, gnutls-cli/serv, libcoap) as a
    subprocess, its output captured to the test log, awaitable;
  * EchoBackend (a UDP echo server on a thread), Meter (a plain UDP client),
    and a tiny CoAP encoder/decoder;
  * wait_until(): poll a condition against a deadline.  Tests never sleep
    for something they can wait on; the only fixed waits are for absence
    (a datagram that must *not* arrive), and those are short and named.

Binaries come from the environment (set by AM_TESTS_ENVIRONMENT):
  PSKTUND, PSKTUNCTL   the daemon and its control client
  PLUGIN_BUILD_DIR     abs_top_builddir (plugins are in plugins/*/.libs/)
Verbose logs: PSKTUN_TEST_VERBOSE=1 copies everything to stderr live.
"""

import errno
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

LO = '127.0.0.1'
# Deadlines are caps, not expectations: a passing test never waits for one,
# it only bounds how long a broken test hangs.  They are generous because the
# suite runs on busy 2-core machines, under AddressSanitizer (several times
# slower), beside parallel builds: a cap that a slow but correct run can reach
# is a flaky test.  Nothing may assert that something happens *within* a
# short time unless that time is the behaviour under test (and then the bound
# must come from the daemon's own timers, with the slack said).
T = 60.0                 # default deadline for anything awaited
TEST_TIMEOUT = 600       # a single test function may take at most this long (s)
SKIP = 77

# psktund's default priority, given to GnuTLS peers so they offer what it accepts.
PRIO = 'NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+SIGN-ALL:+GROUP-ALL:+COMP-NULL:%NO_TICKETS'
OPENSSL_CIPHER = 'PSK-AES128-CCM8'


class Skip(Exception):
    """Raised to skip a test (e.g. a peer binary is missing)."""


class Fail(AssertionError):
    pass


# ----------------------------------------------------------------- logging

_log_lock = threading.Lock()
_log_lines = []          # everything the current test logged, dumped on failure
VERBOSE = os.environ.get('PSKTUN_TEST_VERBOSE') not in (None, '', '0')
_t0 = time.monotonic()


def log(msg):
    line = '[%8.3f] %s' % (time.monotonic() - _t0, msg)
    with _log_lock:
        _log_lines.append(line)
        if VERBOSE:
            print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- waiting

def wait_until(pred, timeout=T, what=None, interval=0.02):
    """Poll pred() until it returns a true value (returned) or the deadline
    passes (Fail).  An exception from pred counts as 'not yet' and is shown
    if the deadline passes.  (await_condition is the same, by its newer name.)"""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (Fail, AssertionError, OSError, ValueError, KeyError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise Fail('timed out after %.1fs waiting for %s%s' % (
                timeout, what or getattr(pred, '__name__', 'condition'),
                (' (last error: %r)' % last_exc) if last_exc else ''))
        time.sleep(interval)


def await_condition(pred, what=None, timeout=T, interval=0.02):
    """Wait for a condition instead of sleeping for a time: poll pred() until
    it is true (its value is returned) or the generous cap `timeout` passes
    (Fail, naming `what` and pred's last exception).  Use it for anything the
    daemon does eventually: a counter reaching a value, a session closing, a
    log line.  Never follow it with an assertion that the condition came
    quickly: how long it took depends on the machine."""
    return wait_until(pred, timeout, what, interval)


def eq(got, want, what=''):
    if got != want:
        raise Fail('%s: got %r, want %r' % (what or 'value', got, want))


# ----------------------------------------------------------------- binaries

def env_bin(var, default_name):
    """A binary named by an environment variable (abs path), else PATH."""
    p = os.environ.get(var)
    if p:
        if not os.access(p, os.X_OK):
            raise Skip('%s=%s is not executable (build psktun first)' % (var, p))
        return p
    w = shutil.which(default_name)
    if not w:
        raise Skip('%s not set and %s not on PATH' % (var, default_name))
    return w


def psktund():
    return env_bin('PSKTUND', 'psktund')


def psktunctl():
    return env_bin('PSKTUNCTL', 'psktunctl')


def need(*names):
    """Return the absolute paths of third-party peer binaries; Skip if one is missing."""
    out = []
    for n in names:
        w = shutil.which(n)
        if not w:
            raise Skip('peer binary %s not installed (Debian: %s)' % (n, {
                'openssl': 'openssl', 'gnutls-cli': 'gnutls-bin', 'gnutls-serv': 'gnutls-bin',
            }.get(n, 'libcoap3-bin')))
        out.append(w)
    return out[0] if len(out) == 1 else out


def plugin_dir(env):
    """A directory with the plugins symlinked from the libtool build."""
    top = os.environ.get('PLUGIN_BUILD_DIR')
    if not top:
        raise Skip('PLUGIN_BUILD_DIR not set')
    d = env.path('plugins')
    os.makedirs(d, exist_ok=True)
    for name in ('mqttsn', 'coap', 'example'):
        so = os.path.join(top, 'plugins', name, '.libs', name + '.so')
        if os.path.exists(so):
            os.symlink(so, os.path.join(d, name + '.so'))
    return d


# ----------------------------------------------------------------- ports

def free_udp_port():
    """A UDP port on 127.0.0.1 that nothing is bound to right now, for a
    daemon or peer to bind a moment later: one outside the kernel's ephemeral
    range (stable_udp_port), so that no socket bound to port 0 anywhere on
    the machine can take it in between ("address already in use" at start,
    seen on a busy machine)."""
    return stable_udp_port()


def _kernel_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((LO, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _ephemeral_range():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def stable_udp_port():
    """A free UDP port on 127.0.0.1 outside the kernel's ephemeral range.
    Between choosing a port and binding it, or while a daemon is down to be
    started again on its port, a socket bound to port 0 anywhere on the
    machine (another test, a gateway's per-session socket) can take an
    ephemeral port; only an explicit bind can take this one, and the tests'
    explicit binds pick at random among some 20000."""
    lo, hi = _ephemeral_range()
    # p and p + 1 both outside (free_port_pair wants two)
    ranges = [r for r in ((10000, lo - 1), (hi + 1, 65535)) if r[1] - r[0] >= 1000]
    rnd = random.SystemRandom()
    for _ in range(1000) if ranges else ():
        a, b = rnd.choice(ranges)
        p = rnd.randrange(a, b)
        if _port_free(p, socket.SOCK_DGRAM):
            return p
    return _kernel_udp_port()


def _port_free(port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LO, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port_pair():
    """p such that p and p+1 are free for UDP and TCP on 127.0.0.1 (libcoap
    servers listen on -p PORT for coap and PORT+1 for coaps, both UDP and TCP)."""
    for _ in range(200):
        p = stable_udp_port()
        if p >= 65535:
            continue
        if all(_port_free(q, k) for q in (p, p + 1)
               for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            return p
    raise Fail('no free port pair found')


def udp_bound(port):
    """True if some socket is bound to UDP 127.0.0.1:port or 0.0.0.0:port (from /proc)."""
    want = ('0100007F:%04X' % port, '00000000:%04X' % port)
    for table in ('/proc/net/udp', '/proc/net/udp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    local = line.split()[1]
                    if local in want or local.endswith(':%04X' % port) and table.endswith('6'):
                        return True
        except OSError:
            pass
    return False


def wait_udp_bound(port, timeout=T, what=None):
    wait_until(lambda: udp_bound(port), timeout, what or 'a socket on UDP port %d' % port)


def udp_socket(port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((LO, port))
    return s


# ----------------------------------------------------------------- files

def hexkey(key):
    return key.hex() if isinstance(key, (bytes, bytearray)) else key.encode().hex()


def write_keys(path, keys, mode=0o600):
    """keys: {identity: key} with key as bytes or an ASCII str (libcoap's
    tools take ASCII keys, psktun's file their hex)."""
    with open(path, 'w') as f:
        f.write('# written by the integration harness\n')
        for ident, key in keys.items():
            f.write('%s:%s\n' % (ident, hexkey(key)))
    os.chmod(path, mode)
    return path


_FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^\s"=\\]*)(?: |$)')
_ESC = re.compile(r'\\(x[0-9a-f]{2}|.)')


def control_fields(line):
    """A psktunctl `key=value ...` line as a dict; a quoted value (an
    identity holding space, '=', '"', '\\' or other bytes) decoded. Fails on
    anything that is not exactly such fields."""
    out, pos = {}, 0
    while pos < len(line):
        m = _FIELD.match(line, pos)
        if not m:
            raise Fail('not a key=value field at %d of %r' % (pos, line))
        k, v = m.group(1), m.group(2)
        if v.startswith('"'):
            v = _ESC.sub(lambda e: chr(int(e.group(1)[1:], 16)) if e.group(1)[0] == 'x' and len(e.group(1)) == 3
                         else {'n': '\n', 'r': '\r', 't': '\t'}.get(e.group(1), e.group(1)), v[1:-1])
        if k in out:
            raise Fail('field %s twice in %r' % (k, line))
        out[k] = v
        pos = m.end()
    return out


def _q(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def config_text(mode, keys='keys.psk', control=None, tunnels=(), meters=(),
                dtls=None, plugin_dir=None, extra=''):
    """libconfig text for psktund.  tunnels: dicts with name, accept, connect
    and optional plugin/options; meters: (identity, source) pairs; dtls: dict."""
    out = ['mode = %s;' % _q(mode), 'keys = %s;' % _q(keys)]
    if control:
        out.append('control = %s;' % _q(control))
    if plugin_dir:
        out.append('plugin_dir = %s;' % _q(plugin_dir))
    out.append('tunnels = (')
    tl = []
    for t in tunnels:
        items = ['name = %s;' % _q(t['name'])]
        if t.get('plugin'):
            items.append('plugin = %s;' % _q(t['plugin']))
        items.append('accept = %s;' % _q(t['accept']))
        items.append('connect = %s;' % _q(t['connect']))
        if t.get('options'):
            items.append('options = { %s };' % ' '.join(
                '%s = %s;' % (k, _q(str(v))) for k, v in t['options'].items()))
        tl.append('  { ' + ' '.join(items) + ' }')
    out.append(',\n'.join(tl))
    out.append(');')
    if meters:
        out.append('meters = (')
        out.append(',\n'.join('  { identity = %s; source = %s; }' % (_q(i), _q(s))
                              for i, s in meters))
        out.append(');')
    if dtls:
        out.append('dtls = {')
        for k, v in dtls.items():
            out.append('  %s = %s;' % (k, _q(v) if isinstance(v, str) else v))
        out.append('};')
    if extra:
        out.append(extra)
    return '\n'.join(out) + '\n'


# ----------------------------------------------------------------- env

class Env:
    """One test's world: a temp dir and cleanups run in reverse order."""

    def __init__(self, name):
        self.name = name
        # short: the control socket's path must fit in sun_path (108 bytes)
        self.dir = tempfile.mkdtemp(prefix='psktun-it-')
        log('%s: temp dir %s' % (name, self.dir))
        self._cleanups = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def defer(self, fn, *args):
        self._cleanups.append((fn, args))

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, 'w') as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def close(self):
        errors = []
        while self._cleanups:
            fn, args = self._cleanups.pop()
            try:
                fn(*args)
            except Exception as e:    # keep cleaning up; report afterwards
                errors.append('%s: %r' % (getattr(fn, '__qualname__', fn), e))
        shutil.rmtree(self.dir, ignore_errors=True)
        return errors

    # conveniences that register their own cleanup
    def udp(self, port=0):
        s = udp_socket(port)
        self.defer(s.close)
        return s

    def meter(self, port=0, name='meter'):
        m = Meter(port, name)
        self.defer(m.close)
        return m

    def echo(self, prefix=b''):
        e = EchoBackend(prefix)
        self.defer(e.stop)
        return e

    def peer(self, name, argv, **kw):
        p = Peer(name, argv, **kw)
        self.defer(p.stop)
        return p

    def daemon(self, name, mode, tunnels, keys, meters=(), dtls=None, **kw):
        """Write keys + config into a subdirectory and start psktund on it."""
        d = Daemon(self, name, mode, tunnels, keys, meters, dtls, **kw)
        self.defer(d.stop)
        d.start()
        return d


# ----------------------------------------------------------------- processes

class _Capture:
    """Reads a stream on a thread into a buffer (and the test log)."""

    def __init__(self, name, stream, logfile=None):
        self.name = name
        self.buf = b''
        self.cond = threading.Condition()
        self.logfile = logfile
        self.eof = False
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        partial = b''
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except OSError:
                chunk = b''
            with self.cond:
                if chunk:
                    self.buf += chunk
                else:
                    self.eof = True
                self.cond.notify_all()
            if self.logfile:
                self.logfile.write(chunk)
                self.logfile.flush()
            partial += chunk
            while b'\n' in partial or (not chunk and partial):
                line, sep, partial = partial.partition(b'\n')
                log('%s| %s' % (self.name, line.decode('utf-8', 'replace')))
                if not sep:
                    break
            if not chunk:
                break

    def text(self):
        with self.cond:
            return self.buf.decode('utf-8', 'replace')

    def wait_for(self, pattern, timeout=T, start=0):
        """Wait until `pattern` (bytes/str regex) matches the output after
        offset `start`; returns the match."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise Fail('%s: timed out after %.1fs waiting for %r%s; output so far:\n%s' % (
                        self.name, timeout, pattern, ' (stream closed)' if self.eof else '',
                        self.buf[-2000:].decode('utf-8', 'replace')))
                self.cond.wait(min(left, 0.2))

    def size(self):
        with self.cond:
            return len(self.buf)


class Peer:
    """A subprocess with stdin a pipe and stdout/stderr captured (both logged)."""

    def __init__(self, name, argv, stdin=True, cwd=None):
        self.name = name
        self.argv = list(argv)
        log('%s: start: %s' % (name, ' '.join(self.argv)))
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                     start_new_session=True)
        self.out = _Capture(name + '.out', self.proc.stdout)
        self.err = _Capture(name + '.err', self.proc.stderr)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except (OSError, AttributeError):
            pass

    def wait_out(self, pattern, timeout=T, start=0):
        return self.out.wait_for(pattern, timeout, start)

    def wait_err(self, pattern, timeout=T, start=0):
        return self.err.wait_for(pattern, timeout, start)

    def wait_exit(self, timeout=T):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Fail('%s did not exit within %.1fs' % (self.name, timeout))
        self.out.thread.join(2)
        self.err.thread.join(2)
        return rc

    def running(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Stop it (its own process group only), kill after `timeout`; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log('%s: did not stop on signal %d, killing' % (self.name, sig))
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout)
        self.close_stdin()
        self.out.thread.join(2)
        self.err.thread.join(2)
        return self.proc.returncode


class Daemon:
    """psktund in the foreground on a config of its own, plus psktunctl."""

    def __init__(self, env, name, mode, tunnels, keys, meters=(), dtls=None,
                 verbose=1, plugin_dir=None, extra='', key_mode=0o600):
        self.env = env
        self.name = name
        self.dir = env.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.mode = mode
        self.tunnels = tunnels
        self.keys = dict(keys)
        self.meters = list(meters)
        self.dtls = {'retransmit_ms': 500} if dtls is None else dtls
        self.verbose = verbose
        self.plugin_dir = plugin_dir
        self.extra = extra
        self.key_mode = key_mode
        self.control = os.path.join(self.dir, 'control')
        self.conf = os.path.join(self.dir, 'psktun.conf')
        self.keyfile = os.path.join(self.dir, 'keys.psk')
        self.proc = None
        self.err = None
        self.rc = None
        self.started = False
        self.write()

    def config(self, **over):
        kw = dict(mode=self.mode, keys='keys.psk', control=self.control, tunnels=self.tunnels,
                  meters=self.meters, dtls=self.dtls, plugin_dir=self.plugin_dir, extra=self.extra)
        kw.update(over)
        return config_text(**kw)

    def write(self, text=None):
        """(Re)write the key file and the configuration (text: a config of your own)."""
        write_keys(self.keyfile, self.keys, self.key_mode)
        with open(self.conf, 'w') as f:
            f.write(text if text is not None else self.config())
        log('%s: config %s:\n%s' % (self.name, self.conf, text if text is not None else self.config()))

    def start(self, timeout=T):
        argv = [psktund(), '-f', '-c', self.conf] + ['-v'] * self.verbose
        log('%s: start: %s' % (self.name, ' '.join(argv)))
        self.logfile = open(os.path.join(self.dir, 'stderr.log'), 'wb')
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.err = _Capture(self.name, self.proc.stdout, self.logfile)
        self.wait_log(r'psktund \S+ ready', timeout)   # not 'worker 1 ready': the leader's
        self.started = True
        return self

    def wait_log(self, pattern, timeout=T, start=0):
        return self.err.wait_for(pattern, timeout, start)

    def log_mark(self):
        """Offset into the daemon's log, to wait for a line written after now."""
        return self.err.size()

    def log_text(self):
        return self.err.text()

    def ctl(self, *args, check=True, timeout=T):
        argv = [psktunctl(), '-s', self.control] + list(args)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        out = r.stdout.decode('utf-8', 'replace')
        if check and r.returncode != 0:
            raise Fail('%s failed (%d): %s %s' % (' '.join(argv), r.returncode, out,
                                                  r.stderr.decode('utf-8', 'replace')))
        return out

    def stats(self):
        st = {}
        for line in self.ctl('stats').splitlines():
            k, sep, v = line.partition('=')
            if sep:
                st[k.strip()] = int(v.strip())
        return st

    def stats_now(self, timeout=T):
        """stats read straight off the control socket (the same one-line
        command psktunctl sends), for loops that poll: starting psktunctl
        (under AddressSanitizer, on a busy machine) costs more than the
        daemon's answer. psktunctl itself is tested through stats()."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(timeout)
            c.connect(self.control)
            c.sendall(b'stats\n')
            data = b''
            while True:
                b = c.recv(65536)
                if not b:
                    break
                data += b
        st = {}
        for line in data.decode('utf-8', 'replace').splitlines():
            k, sep, v = line.partition('=')
            if sep and v.strip().lstrip('-').isdigit():
                st[k.strip()] = int(v.strip())
        if 'plain_in' not in st:
            raise Fail('%s: no stats on the control socket: %r' % (self.control, data[:200]))
        return st

    def sessions(self):
        """One dict per session line (its key=value fields)."""
        return [control_fields(line) for line in self.ctl('sessions').splitlines() if line.strip()]

    def session(self, identity):
        """The session line of `identity` as a dict, or None: numeric fields
        (counters, last_activity_s) as ints."""
        for s in self.sessions():
            if s.get('identity') == identity:
                return {k: int(v) if v.isdigit() else v for k, v in s.items()}
        return None

    def established(self):
        return [s for s in self.sessions() if s.get('state') == 'established']

    def wait_stat(self, name, want, timeout=T):
        """Wait until stats()[name] == want (exactly; fails on overshoot only at the deadline)."""
        wait_until(lambda: self.stats()[name] == want, timeout,
                   '%s: %s == %r' % (self.name, name, want))

    def reload(self, timeout=T):
        """SIGHUP and wait for the outcome line; returns it ('reloaded' or 'failed')."""
        mark = self.log_mark()
        self.proc.send_signal(signal.SIGHUP)
        m = self.wait_log(r'configuration reloaded|reload failed', timeout, mark)
        return m.group(0).decode()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=T):
        """SIGTERM; returns the exit code (kills and fails if it hangs)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                self.err.thread.join(2)
                raise Fail('%s did not exit within %.1fs of SIGTERM' % (self.name, timeout))
        self.err.thread.join(2)
        self.logfile.close()
        self.rc = self.proc.returncode
        return self.rc

    def stop(self):
        """Cleanup: SIGTERM, and the exit code must be 0."""
        if self.proc is None or self.rc is not None:
            return
        rc = self.terminate()
        if rc != 0 and self.started:
            raise Fail('%s exited %r after SIGTERM, want 0' % (self.name, rc))


def _daemon_on_a_free_port(env, name, mode, port, make_tunnel, **kw):
    """Start psktund whose tunnel accepts on 127.0.0.1:port (a fresh one if
    port is None).  A fresh port is free when chosen, not when the daemon
    binds it a moment later: on a busy machine another socket can take it in
    between ("address already in use").  Then choose again, a few times."""
    for attempt in range(5):
        p = port or free_udp_port()
        d = Daemon(env, name, mode, [make_tunnel('%s:%d' % (LO, p))], **kw)
        env.defer(d.stop)
        try:
            d.start()
        except Fail:
            if port is None and attempt < 4 and not d.running() and \
                    'address already in use' in d.log_text():
                log('%s: port %d was taken before psktund bound it; another' % (name, p))
                continue
            raise
        d.port = p
        d.addr = '%s:%d' % (LO, p)
        return d


def terminator(env, keys, backend_addr, name='terminator', tunnel='t1', port=None, **kw):
    """psktund as terminator on a fresh 127.0.0.1 port (or `port`, e.g. a
    stable_udp_port() for one that restarts), relaying to backend_addr."""
    return _daemon_on_a_free_port(env, name, 'terminator', port,
                                  lambda accept: dict(name=tunnel, accept=accept,
                                                      connect=backend_addr), keys=keys, **kw)


def gateway(env, keys, meters, connect, name='gateway', tunnel='t1', **kw):
    """psktund as gateway on a fresh 127.0.0.1 port; meters: (identity, source) pairs."""
    return _daemon_on_a_free_port(env, name, 'gateway', None,
                                  lambda accept: dict(name=tunnel, accept=accept, connect=connect),
                                  keys=keys, meters=meters, **kw)


def check_config(conf_path, timeout=T):
    """psktund -n -c FILE: (exit code, stdout, stderr)."""
    r = subprocess.run([psktund(), '-n', '-c', conf_path], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    out, err = r.stdout.decode('utf-8', 'replace'), r.stderr.decode('utf-8', 'replace')
    log('psktund -n -c %s -> %d\nstdout: %s\nstderr: %s' % (conf_path, r.returncode, out, err))
    return r.returncode, out, err


# ----------------------------------------------------------------- UDP peers

class EchoBackend:
    """UDP echo server on 127.0.0.1 on a thread: replies prefix+payload to the sender."""

    def __init__(self, prefix=b''):
        self.sock = udp_socket()
        self.port = self.sock.getsockname()[1]
        self.addr = '%s:%d' % (LO, self.port)
        self.prefix = prefix
        self.got = []               # (payload, source)
        self.cond = threading.Condition()
        self._stop = False
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                if self._stop:
                    break
                continue
            with self.cond:
                self.got.append((data, src))
                self.cond.notify_all()
            try:
                self.sock.sendto(self.prefix + data, src)
            except OSError:
                pass

    def payloads(self):
        with self.cond:
            return [d for d, _ in self.got]

    def wait_count(self, n, timeout=T):
        wait_until(lambda: len(self.payloads()) >= n, timeout, 'echo backend got %d datagrams' % n)
        return self.payloads()

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


class Meter:
    """A plaintext UDP client (a smart meter on the LAN)."""

    def __init__(self, port=0, name='meter'):
        self.name = name
        self.sock = udp_socket(port)
        self.port = self.sock.getsockname()[1]
        self.source = '%s:%d' % (LO, self.port)

    def send(self, data, to):
        host, port = (to.rsplit(':', 1) if isinstance(to, str) else to)
        self.sock.sendto(data, (host, int(port)))
        log('%s: sent %d bytes to %s:%s: %r' % (self.name, len(data), host, port, data[:64]))

    def recv(self, timeout=T):
        """The next datagram (payload, source), or Fail after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, src = self.sock.recvfrom(65535)
        except socket.timeout:
            raise Fail('%s: no datagram within %.1fs' % (self.name, timeout))
        log('%s: got %d bytes from %s:%d: %r' % (self.name, len(data), src[0], src[1], data[:64]))
        return data, src

    def request(self, data, to, timeout=T):
        """Send and return the reply's payload."""
        self.send(data, to)
        return self.recv(timeout)[0]

    def request_retry(self, data, to, timeout=T, every=1.0):
        """Send, resending every `every` s until a reply (for a first datagram
        whose session may still be coming up); returns the reply payload."""
        deadline = time.monotonic() + timeout
        while True:
            self.send(data, to)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail('%s: no reply within %.1fs' % (self.name, timeout))
            self.sock.settimeout(min(every, left))
            try:
                d, src = self.sock.recvfrom(65535)
                log('%s: got %d bytes from %s:%d: %r' % (self.name, len(d), src[0], src[1], d[:64]))
                return d
            except socket.timeout:
                continue

    def pending(self):
        """Datagrams already waiting (non-blocking)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recvfrom(65535)[0])
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)
        return out

    def close(self):
        self.sock.close()


# ----------------------------------------------------------------- CoAP

COAP_CON, COAP_NON, COAP_ACK, COAP_RST = 0, 1, 2, 3
COAP_GET, COAP_POST, COAP_PUT = 1, 2, 3
OPT_URI_PATH, OPT_CONTENT_FORMAT, OPT_URI_QUERY = 11, 12, 15


def coap_encode(mtype, code, mid, token=b'', options=(), payload=b''):
    """options: (number, bytes) pairs in any order."""
    out = bytearray([0x40 | (mtype << 4) | len(token), code, mid >> 8, mid & 0xff])
    out += token
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        delta, length = num - last, len(val)
        last = num

        def nib(x):
            if x < 13:
                return x, b''
            if x < 269:
                return 13, bytes([x - 13])
            return 14, (x - 269).to_bytes(2, 'big')
        dn, dx = nib(delta)
        ln, lx = nib(length)
        out.append((dn << 4) | ln)
        out += dx + lx + val
    if payload:
        out += b'\xff' + payload
    return bytes(out)


def coap_get(mid, token, path, query=()):
    opts = [(OPT_URI_PATH, seg.encode()) for seg in path.strip('/').split('/') if seg]
    opts += [(OPT_URI_QUERY, q.encode()) for q in query]
    return coap_encode(COAP_CON, COAP_GET, mid, token, opts)


def coap_decode(data):
    """-> dict(type, code, mid, token, options=[(num, bytes)], payload)."""
    if len(data) < 4 or data[0] >> 6 != 1:
        raise ValueError('not CoAP: %r' % data[:8])
    tkl = data[0] & 0x0f
    msg = dict(type=(data[0] >> 4) & 3, code=data[1], mid=(data[2] << 8) | data[3],
               token=data[4:4 + tkl], options=[], payload=b'')
    i, num = 4 + tkl, 0
    while i < len(data):
        if data[i] == 0xff:
            msg['payload'] = data[i + 1:]
            break
        dn, ln = data[i] >> 4, data[i] & 0x0f
        i += 1

        def ext(x, i):
            if x == 13:
                return data[i] + 13, i + 1
            if x == 14:
                return int.from_bytes(data[i:i + 2], 'big') + 269, i + 2
            return x, i
        d, i = ext(dn, i)
        ln, i = ext(ln, i)
        num += d
        msg['options'].append((num, data[i:i + ln]))
        i += ln
    return msg


def coap_code(cls, detail):
    return (cls << 5) | detail


# ----------------------------------------------------------------- peers

def libcoap_server(env, flavour, port, idfile, default_key='default-key-never-used-0', verbosity=4):
    """coap-server-{openssl,gnutls,notls} on 127.0.0.1: coap on `port`, coaps on port+1."""
    argv = [need('coap-server-' + flavour), '-A', LO, '-p', str(port), '-v', str(verbosity)]
    if flavour != 'notls':
        argv += ['-k', default_key, '-i', idfile]
    p = env.peer('coap-server-' + flavour, argv, stdin=False)
    # No 'listening' line to wait for: wait until its plain port answers a CoAP ping.
    wait_coap_ping(port)
    return p


def write_coap_idfile(path, keys):
    """libcoap's -i file: 'hint,identity,key' lines; an empty hint matches any.
    libcoap takes the key as it is written (ASCII), so keys must be str."""
    with open(path, 'w') as f:
        for ident, key in keys.items():
            f.write(',%s,%s\n' % (ident, key))
    return path


def wait_coap_ping(port, timeout=T):
    """Until a CoAP server on 127.0.0.1:port answers an empty CON (ping) with RST."""
    s = udp_socket()
    try:
        def pong():
            s.sendto(coap_encode(COAP_CON, 0, 0x7a7a), (LO, port))
            s.settimeout(0.2)
            try:
                d = s.recv(2048)
            except socket.timeout:
                return False
            return coap_decode(d)['type'] == COAP_RST
        wait_until(pong, timeout, 'CoAP server on port %d' % port)
    finally:
        s.close()


def coap_direct(port, msg, timeout=5):
    """Send one CoAP message straight to 127.0.0.1:port, return the reply."""
    s = udp_socket()
    try:
        s.settimeout(timeout)
        s.sendto(msg, (LO, port))
        return s.recv(65535)
    finally:
        s.close()


def openssl_s_server(env, port, key, identity, quiet=True, extra=()):
    """openssl s_server, DTLS 1.2 PSK-AES128-CCM8 only.  stdin stays open (EOF
    ends s_server); received plaintext appears on stdout; what is written to
    stdin goes out as one record each write.  quiet=False prints the session
    and 'DONE' when the peer sends close_notify, but then a line written to
    stdin that starts with Q, q, r, R, k, K, c, P or S is a command.
    Note: -psk_identity is not enforced (another identity only warns)."""
    argv = [need('openssl'), 's_server', '-dtls1_2', '-accept', '%s:%d' % (LO, port),
            '-psk', hexkey(key), '-psk_identity', identity, '-cipher', OPENSSL_CIPHER,
            '-nocert'] + (['-quiet'] if quiet else []) + list(extra)
    p = env.peer('s_server', argv)
    wait_udp_bound(port, what='openssl s_server on UDP port %d' % port)
    return p


def openssl_s_client(env, port, key, identity, name='s_client', extra=()):
    argv = [need('openssl'), 's_client', '-dtls1_2', '-connect', '%s:%d' % (LO, port),
            '-psk', hexkey(key), '-psk_identity', identity, '-cipher', OPENSSL_CIPHER,
            ] + list(extra)
    return env.peer(name, argv)




def gnutls_cli(env, port, key, identity, name='gnutls-cli', extra=()):
    argv = [need('gnutls-cli'), '--udp', '-p', str(port), LO, '--pskusername', identity,
            '--pskkey', hexkey(key), '--priority', PRIO] + list(extra)
    return env.peer(name, argv)


LIBCOAP_LOG_RX = re.compile(r'^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d\.\d{3} (EMRG|ALRT|CRIT|ERR |WARN|NOTE|INFO|DEBG|OSC )')


def coap_client(env, flavour, uri, identity=None, key=None, method='get', timeout_s=10,
                extra=(), name=None):
    """Runs coap-client-{gnutls,openssl,notls} to completion; returns (rc,
    payload, log): libcoap 4.3.1 writes its log lines to stdout too, so they
    are split from the payload here."""
    argv = [need('coap-client-' + flavour), '-B', str(timeout_s), '-m', method]
    if identity:
        argv += ['-u', identity, '-k', key]
    argv += list(extra) + [uri]
    p = env.peer(name or 'coap-client-' + flavour, argv, stdin=False)
    rc = p.wait_exit(timeout_s + 10)
    payload, logl = [], []
    for line in p.out.text().splitlines(True):
        (logl if LIBCOAP_LOG_RX.match(line) else payload).append(line)
    return rc, ''.join(payload), ''.join(logl) + p.err.text()


# ----------------------------------------------------------------- runner

class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def main(ns, argv=None):
    """Run every test_* function in namespace ns (a module's globals()), each
    with a fresh Env; exit 0 / 1 / 77.  Arguments select tests by name."""
    argv = sys.argv[1:] if argv is None else argv
    tests = [(n, f) for n, f in ns.items() if n.startswith('test_') and callable(f)]
    if argv:
        tests = [(n, f) for n, f in tests if n in argv or any(a in n for a in argv)]
    global _log_lines
    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, _alarm)
    for name, fn in tests:
        _log_lines = []
        env = Env(name)
        ok, why = True, ''
        t0 = time.monotonic()
        signal.alarm(TEST_TIMEOUT)
        try:
            fn(env)
        except Skip as e:
            ok, why = None, str(e)
        except _Timeout:
            ok, why = False, 'test took longer than %ds' % TEST_TIMEOUT
        except BaseException:
            ok, why = False, traceback.format_exc()
        finally:
            signal.alarm(0)
        try:
            errs = env.close()
        except _Timeout:
            errs = ['cleanup timed out']
        if errs and ok is not False:
            ok, why = False, 'cleanup: ' + '; '.join(errs)
        elif errs:
            why += '\ncleanup: ' + '; '.join(errs)
        dt = time.monotonic() - t0
        if ok is None:
            skipped += 1
            print('SKIP: %s (%s)' % (name, why), flush=True)
        elif ok:
            passed += 1
            print('PASS: %s (%.2fs)' % (name, dt), flush=True)
        else:
            failed += 1
            print('FAIL: %s (%.2fs)\n%s' % (name, dt, why), flush=True)
            print('---- log of %s ----' % name)
            print('\n'.join(_log_lines[-400:]))
            print('---- end of log ----', flush=True)
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped), flush=True)
    if failed:
        sys.exit(1)
    if skipped and not passed:
        sys.exit(SKIP)
    sys.exit(0)

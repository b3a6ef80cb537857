#!/usr/bin/env python3
"""A reload is all or nothing (issue 11 item 2): when a tunnel cannot be opened
with the new configuration (a plugin refuses its options, the new `accept`
address is busy) the old configuration keeps running exactly as it was (the
meter is answered by its old session, no handshake), and the log, psktunctl
reload's answer and its exit status say "reload failed: WHY"; with terminator
workers too. A changed tunnel keeps its port (its socket passes to the new
one). `psktund -n` checks plugin options (answer_timeout_ms = "banana").
Exit 0: all passed, 1: a test failed, 77: psktund, psktunctl or a plugin missing."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

CONTENT = h.coap_code(2, 5)
BANANA = ('answer_timeout_ms = "banana": expected milliseconds from 0 (off) to 3600000')


def ctl(d, *args):
    """psktunctl against d: (exit code, stdout, stderr)."""
    r = subprocess.run([h.psktunctl(), '-s', d.control] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    out, err = r.stdout.decode('utf-8', 'replace'), r.stderr.decode('utf-8', 'replace')
    h.log('psktunctl %s -> %d\nstdout: %r\nstderr: %r' % (' '.join(args), r.returncode, out, err))
    return r.returncode, out, err


def tunnel_line(d, name='t1'):
    """The configuration line a tunnel starts on (psktund's FILE:LINE)."""
    for i, line in enumerate(d.config().splitlines(), 1):
        if line.lstrip().startswith('{ name = "%s";' % name):
            return i
    raise Fail('no tunnel %s in %s' % (name, d.conf))


def session_view(d):
    """What a reload that failed must leave alone: each session's identity,
    state, peer and counters (not last_activity_s, which moves)."""
    return sorted(tuple((k, v) for k, v in sorted(s.items()) if k != 'last_activity_s')
                  for s in d.sessions())


def assert_refused(d, mark, why_rx):
    """The log and `psktunctl reload` say reload failed: WHY; psktunctl exits 1."""
    m = d.wait_log(r'configuration reloaded[^\n]*|reload failed: [^\n]*', start=mark)
    line = m.group(0).decode()
    if not re.fullmatch(r'reload failed: %s; the running configuration stays in force' % why_rx,
                        line):
        raise Fail('SIGHUP reload logged %r, want "reload failed: %s; ..."' % (line, why_rx))
    rc, out, err = ctl(d, 'reload')
    if (rc, out) != (1, '') or not re.fullmatch(r'psktunctl: reload failed: %s\n' % why_rx, err):
        raise Fail('psktunctl reload: exit %d, stdout %r, stderr %r; want 1, "", '
                   '"psktunctl: reload failed: %s"' % (rc, out, err, why_rx))


class CoapBackend:
    """A CoAP server on a thread: a CON request gets a piggybacked 2.05 'ok'."""

    def __init__(self, env):
        self.sock = env.udp()
        self.addr = '%s:%d' % (h.LO, self.sock.getsockname()[1])
        self.sock.settimeout(0.05)
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        env.defer(self.stop)

    def _run(self):
        while not self._stop:
            try:
                data, src = self.sock.recvfrom(65535)
                m = h.coap_decode(data)
            except socket.timeout:
                continue
            except ValueError:
                continue
            except OSError:
                break
            if m['type'] == h.COAP_CON:
                self.sock.sendto(h.coap_encode(h.COAP_ACK, CONTENT, m['mid'], m['token'],
                                               payload=b'ok'), src)

    def stop(self):
        self._stop = True
        self.thread.join(2)


def coap_round_trip(meter, gw, mid):
    r = h.coap_decode(meter.request(h.coap_get(mid, b'\x07', '/x'), gw.addr))
    eq((r['type'], r['code'], r['mid'], r['payload']), (h.COAP_ACK, CONTENT, mid, b'ok'),
       '%s answered through the gateway (mid %#x)' % (meter.name, mid))


def test_reload_with_options_the_plugin_refuses_keeps_the_old_tunnel(env):
    h.psktund()
    h.psktunctl()
    pdir = h.plugin_dir(env)
    if not os.path.exists(os.path.join(pdir, 'coap.so')):
        raise h.Skip('coap.so not built')
    keys = {'meter-0001': os.urandom(16)}
    backend = CoapBackend(env)
    term = h.terminator(env, keys, backend.addr)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr, plugin_dir=pdir)
    gw.tunnels[0].update(plugin='coap', options={'answer_timeout_ms': '30000'})
    gw.write()
    eq(gw.reload(), 'configuration reloaded', 'reload to the coap tunnel')
    coap_round_trip(m, gw, 0x101)
    before, sessions = gw.stats(), session_view(gw)
    eq([(s['identity'], s['state']) for s in gw.sessions()], [('meter-0001', 'established')],
       'gateway session before the refused reload')

    gw.tunnels[0]['options'] = {'answer_timeout_ms': 'banana'}
    gw.write()
    mark = gw.log_mark()
    gw.proc.send_signal(signal.SIGHUP)
    assert_refused(gw, mark, re.escape('%s:%d: tunnel t1: plugin coap: %s' %
                                       (gw.conf, tunnel_line(gw), BANANA)))
    eq(session_view(gw), sessions, 'gateway sessions after the refused reloads (untouched)')
    coap_round_trip(m, gw, 0x102)
    after = gw.stats()
    eq((after['handshakes_started'], after['handshakes_completed'], after['sessions']),
       (before['handshakes_started'], before['handshakes_completed'], 1),
       'gateway handshakes_started, handshakes_completed, sessions (no new handshake)')
    eq(term.stats()['handshakes_completed'], 1, 'terminator handshakes_completed')


def _opaque_pair(env, **term_kw):
    keys = {'meter-0001': os.urandom(16)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, **term_kw)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    eq(m.request(b'up', gw.addr), b'E:up', 'meter-0001 before the reload')
    return m, gw, term


def _busy_port(env):
    busy = env.udp()
    return busy, busy.getsockname()[1]


def test_reload_onto_a_busy_accept_address_keeps_the_old_tunnel(env):
    h.psktund()
    h.psktunctl()
    m, gw, term = _opaque_pair(env)
    before, sessions = gw.stats(), session_view(gw)
    busy, port = _busy_port(env)
    gw.tunnels[0]['accept'] = '%s:%d' % (h.LO, port)
    gw.write()
    mark = gw.log_mark()
    gw.proc.send_signal(signal.SIGHUP)
    assert_refused(gw, mark, re.escape('%s:%d: tunnel t1: cannot listen on %s:%d: address already in use'
                                       % (gw.conf, tunnel_line(gw), h.LO, port)))
    eq(session_view(gw), sessions, 'gateway sessions after the refused reloads (untouched)')
    eq(m.request(b'still', gw.addr), b'E:still', 'meter-0001 on the old address after the refused reload')
    after = gw.stats()
    eq((after['handshakes_started'], after['handshakes_completed'], after['sessions']),
       (before['handshakes_started'], before['handshakes_completed'], 1),
       'gateway handshakes_started, handshakes_completed, sessions (no new handshake)')
    # Once the address is free the same reload applies.
    busy.close()
    eq(gw.reload(), 'configuration reloaded', 'reload once the address is free')
    eq(m.request(b'moved', '%s:%d' % (h.LO, port)), b'E:moved', 'meter-0001 on the new address')


def test_workers_reload_onto_a_busy_address_keeps_every_worker(env):
    h.psktund()
    h.psktunctl()
    m, gw, term = _opaque_pair(env, extra='workers = 3;')
    before, sessions = term.stats(), session_view(term)
    busy, port = _busy_port(env)
    term.tunnels[0]['accept'] = '%s:%d' % (h.LO, port)
    term.write()
    mark = term.log_mark()
    term.proc.send_signal(signal.SIGHUP)
    assert_refused(term, mark, re.escape('%s:%d: tunnel t1: cannot listen on %s:%d: address already in use'
                                         % (term.conf, tunnel_line(term), h.LO, port)))
    eq(session_view(term), sessions, 'terminator sessions after the refused reloads (untouched)')
    eq(m.request(b'still', gw.addr), b'E:still', 'meter-0001 after the refused reload')
    after = term.stats()
    eq((after['handshakes_completed'], after['sessions']), (before['handshakes_completed'], 1),
       'terminator handshakes_completed, sessions (no new handshake)')


def test_changed_tunnel_keeps_its_port(env):
    """A tunnel whose `connect` changes is replaced, on the same port: its
    socket passes to the new tunnel, which reaches the new terminator."""
    h.psktund()
    h.psktunctl()
    m, gw, term = _opaque_pair(env)
    keys = {'meter-0001': gw.keys['meter-0001']}
    echo2 = env.echo(prefix=b'F:')
    term2 = h.terminator(env, keys, echo2.addr, name='terminator2')
    gw.tunnels[0]['connect'] = term2.addr
    gw.write()
    eq(gw.ctl('reload'), 'reload=done\n', 'psktunctl reload')
    gw.wait_log(r'configuration reloaded: 1 tunnels, 1 keys; 0 sessions kept, 1 closed')
    eq(m.request_retry(b'again', gw.addr), b'F:again', 'meter-0001 through the new terminator')
    eq(gw.stats()['sessions'], 1, 'gateway sessions')


def test_workers_apply_a_changed_tunnel_together(env):
    """Every worker prepares the changed tunnel (on the same port), then all
    commit; the outcome line adds up every worker's sessions."""
    h.psktund()
    h.psktunctl()
    m, gw, term = _opaque_pair(env, extra='workers = 3;')
    echo2 = env.echo(prefix=b'F:')
    term.tunnels[0]['connect'] = echo2.addr
    term.write()
    mark = term.log_mark()
    eq(term.ctl('reload'), 'reload=done\n', 'psktunctl reload')
    m2 = term.wait_log(r'configuration reloaded[^\n]*|reload failed[^\n]*', start=mark)
    eq(m2.group(0).decode(), 'configuration reloaded: 1 tunnels, 1 keys; 0 sessions kept, 1 closed',
       'the outcome line')
    eq(m.request_retry(b'again', gw.addr), b'F:again', 'meter-0001 through the new backend')


def test_check_config_refuses_options_the_plugin_refuses(env):
    h.psktund()
    pdir = h.plugin_dir(env)
    if not os.path.exists(os.path.join(pdir, 'coap.so')):
        raise h.Skip('coap.so not built')
    env.write('keys.psk', 'meter-0001:%s\n' % ('ab' * 16), 0o600)
    conf = env.write('psktun.conf', h.config_text(
        'gateway', plugin_dir=pdir,
        tunnels=[dict(name='t1', plugin='coap', accept='127.0.0.1:%d' % h.free_udp_port(),
                      connect='127.0.0.1:9', options={'answer_timeout_ms': 'banana'})]))
    rc, out, err = h.check_config(conf)
    eq((rc, out, err), (1, '', '%s:5: tunnel t1: plugin coap: %s\n' % (conf, BANANA)),
       'psktund -n exit code, stdout, stderr')


if __name__ == '__main__':
    h.main(globals())

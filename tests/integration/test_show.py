#!/usr/bin/env python3
"""psktunctl show and the failure reasons in the log: "why is meter X not
reporting?" answered for a wrong key, an unknown identity, an unprovisioned
source, a server that is down and a meter that went silent, each by its
`show` line and its log line at the default level (psktund without -v).
Real peers: gnutls-cli and openssl s_client as clients with a wrong key or
an unknown identity or no common cipher suite, psktund against psktund.
Each case prints the lines it captured.
Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import re
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

GOOD = {'meter-0001': os.urandom(16), 'meter-0002': os.urandom(16), 'meter-0003': os.urandom(16)}
# A wrong key shows only in a Finished the other side cannot decrypt and drops
# (RFC 6347 4.1.2.7): the handshake ends when handshake_timeout_s runs out.
HS_TIMEOUT = 2
DTLS = {'retransmit_ms': 500, 'handshake_timeout_s': HS_TIMEOUT}
FAILED_WAIT = HS_TIMEOUT * 3 + 15
# A log line: an optional timestamp, then psktund[pid]: level: message
LOG = r'(?:\S+ )?psktund\[\d+\]: %s: %s'
ADDR = r'127\.0\.0\.1:\d+'
AGE = r'\d+ s'


def log_line(d, rx, what):
    """one_line of d's log, once it is there: a counter read over the control
    socket can change before the log line has come through the pipe."""
    h.await_condition(lambda: any(re.fullmatch(rx, ln) for ln in d.log_text().splitlines()),
                      what)
    return one_line(d.log_text(), rx, what)


def one_line(text, rx, what):
    """The one line of text that matches rx whole; printed for the record."""
    got = [ln for ln in text.splitlines() if re.fullmatch(rx, ln)]
    if len(got) != 1:
        raise Fail('%s: want exactly one line matching\n  %s\ngot %r in:\n%s' % (what, rx, got, text))
    print('%s: %s' % (what, got[0]), flush=True)
    return got[0]


def show_line(d, identity, rx):
    out = d.ctl('show')
    return one_line(out, r'  %s: %s' % (re.escape(identity), rx), '%s show %s' % (d.name, identity))


def dump_meter(d, identity):
    """The --dump fields of one meter (psktunctl(8) names them)."""
    names = ('tunnel', 'identity', 'state', 'peer', 'seen', 'handshake', 'kind', 'air_in_bytes',
             'air_in', 'air_out_bytes', 'air_out', 'plain_in_bytes', 'plain_in', 'plain_out_bytes',
             'plain_out', 'handshakes', 'failures', 'last_failure', 'failure_age', 'failure_detail')
    for line in d.ctl('show', '--dump').splitlines():
        f = line.split('\t')
        if f[0] == 'meter' and f[2] == identity:
            eq(len(f), 21, 'fields of a meter line')
            return dict(zip(names, f[1:]))
    raise Fail('%s: no meter line for %s' % (d.name, identity))


def wait_failed(d, n, what):
    h.wait_until(lambda: d.stats()['handshakes_failed'] >= n, FAILED_WAIT,
                 '%s: handshakes_failed >= %d (%s)' % (d.name, n, what))


# ------------------------------------------------------------ terminator side

def test_terminator_wrong_key_unknown_identity_never_seen(env):
    h.psktund()
    echo = env.echo(prefix=b'echo:')
    term = h.terminator(env, GOOD, echo.addr, dtls=DTLS, verbose=0)
    good = h.gnutls_cli(env, term.port, GOOD['meter-0001'], 'meter-0001', name='good')
    good.wait_out(r'- Handshake was completed')
    good.send(b'ping\n')
    good.wait_out(rb'\necho:ping\n')
    bad_key = os.urandom(16)
    h.gnutls_cli(env, term.port, bad_key, 'meter-0002', name='wrong-key')
    wait_failed(term, 1, 'wrong key')
    h.gnutls_cli(env, term.port, bad_key, 'meter-9999', name='unknown-identity')
    wait_failed(term, 2, 'unknown identity')

    log_line(term, LOG % ('warning', r"tunnel t1: handshake with meter-0002 at %s failed: "
                         r"the client's Finished did not verify: wrong key\?" % ADDR),
             'terminator log, wrong key')
    log_line(term, LOG % ('warning', r'tunnel t1: handshake with meter-9999 at %s failed: '
                         r'unknown identity' % ADDR), 'terminator log, unknown identity')
    show_line(term, 'meter-0001', r'established, peer %s, seen %s ago, handshake %s ago \(full\), '
              r'air in \d+ B/\d+ out \d+ B/\d+, plain in 10 B/1 out 5 B/1, 1 handshake, 0 failures'
              % (ADDR, AGE, AGE))
    show_line(term, 'meter-0002', r'no session, peer %s, seen %s ago, no handshake, '
              r'air in \d+ B/[1-9]\d* out \d+ B/[1-9]\d*, plain in 0 B/0 out 0 B/0, 0 handshakes, '
              r"1 failure, last %s ago: the client's Finished did not verify: wrong key\?"
              % (ADDR, AGE, AGE))
    show_line(term, 'meter-0003', 'never seen')
    one_line(term.ctl('show'), r'    identity meter-9999 from %s: 1 time, last %s ago' % (ADDR, AGE),
             'terminator show, unknown identity')
    st = term.stats()
    eq((st['handshakes_failed'], st['handshake_failures.wrong_key'],
        st['handshake_failures.unknown_identity']), (2, 1, 1),
       'handshakes_failed, handshake_failures.wrong_key, .unknown_identity')
    m = dump_meter(term, 'meter-0002')
    eq((m['state'], m['last_failure'], m['failure_detail'], m['handshakes'], m['failures']),
       ('no-session', 'wrong_key', '-', '0', '1'), 'dump of meter-0002')


def test_terminator_answers_no_common_suite_with_handshake_failure_counted_once(env):
    """openssl s_client offering only a suite psktun does not accept hears the
    handshake_failure alert (RFC 5246 7.4.1.3); a ClientHello retransmitted
    after that is answered again but is not another failure."""
    h.psktund()
    term = h.terminator(env, GOOD, '127.0.0.1:%d' % h.free_udp_port(), dtls=DTLS, verbose=0)
    ossl = h.openssl_s_client(env, term.port, GOOD['meter-0001'], 'meter-0001', name='s_client-gcm',
                              extra=['-cipher', 'PSK-AES256-GCM-SHA384'])
    ossl.wait_err(r'alert handshake failure')
    ossl.wait_exit()
    log_line(term, LOG % ('warning', r'tunnel t1: handshake with a client at %s failed: '
                                     r'no cipher suite in common \(handshake_failure alert sent\)'
                                     % ADDR), 'terminator log, no common suite')

    # The same ClientHello (same random) three times, with the cookie:
    # three alerts, one failure.
    s, _, rnd, cookie = _raw_handshake_start(env, term)
    eq(s.recv(2048)[:1], b'\x15', 'record type answering ClientHello 1 (an alert)')
    for seq in (2, 3):
        s.sendto(_client_hello(rnd, cookie, seq), (h.LO, term.port))
        eq(s.recv(2048)[:1], b'\x15', 'record type answering ClientHello %d (an alert)' % seq)
    st = term.stats()
    eq((st['handshakes_started'], st['handshakes_failed'], st['handshake_failures.no_cipher_suite']),
       (2, 2, 2), 'handshakes_started, handshakes_failed, handshake_failures.no_cipher_suite '
       '(s_client, then the raw client once)')


def _raw_handshake_start(env, term, suite=0x00a9):
    """A client that sends a ClientHello, answers the HelloVerifyRequest with
    the cookie, and does nothing else: (socket, its address, the random)."""
    s = env.udp()
    s.settimeout(h.T)
    rnd = os.urandom(32)
    s.sendto(_client_hello(rnd, b'', 0, suite), (h.LO, term.port))
    cookie = _hello_verify_cookie(s.recv(2048))
    s.sendto(_client_hello(rnd, cookie, 1, suite), (h.LO, term.port))
    return s, '%s:%d' % s.getsockname(), rnd, cookie


def test_terminator_client_silent_after_the_cookie(env):
    h.psktund()
    term = h.terminator(env, GOOD, '127.0.0.1:%d' % h.free_udp_port(), dtls=DTLS, verbose=0)
    s, src, _, _ = _raw_handshake_start(env, term, suite=0xc0a8)     # PSK-AES128-CCM8: accepted
    eq(s.recv(2048)[:1], b'\x16', 'the server\'s flight (a handshake record)')
    wait_failed(term, 1, 'silent client')
    log_line(term, LOG % ('warning', r'tunnel t1: handshake with a client at %s failed: '
                                     r'the client went silent after the cookie' % re.escape(src)),
             'terminator log, client silent after the cookie')
    eq(term.stats()['handshake_failures.silent'], 1, 'handshake_failures.silent')


def test_terminator_too_many_handshakes_from_one_address(env):
    h.psktund()
    term = h.terminator(env, GOOD, '127.0.0.1:%d' % h.free_udp_port(), verbose=0,
                        dtls={'retransmit_ms': 500, 'handshake_rate': 1, 'handshake_burst': 1})
    s, _, _, _ = _raw_handshake_start(env, term, suite=0xc0a8)
    eq(s.recv(2048)[:1], b'\x16', 'the first handshake\'s flight')
    # A second handshake from the same IP at once: over handshake_rate.
    _, src, _, _ = _raw_handshake_start(env, term, suite=0xc0a8)
    term.wait_stat('dropped_limit', 1)
    log_line(term, LOG % ('warning', r'tunnel t1: handshake from %s refused: too many '
                                     r'handshakes \(over handshake_rate from this address\)'
                                     % re.escape(src)), 'terminator log, too many handshakes')
    eq(term.stats()['handshake_failures.too_many_handshakes'], 1, 'handshake_failures.too_many_handshakes')


def _client_hello(random, cookie, seq, suite=0x00a9):
    """A DTLS 1.2 ClientHello offering one suite (default TLS_PSK_WITH_AES_256_GCM_SHA384)."""
    suites = struct.pack('!HH', suite, 0x00ff)
    body = (b'\xfe\xfd' + random + b'\x00' + bytes([len(cookie)]) + cookie +
            struct.pack('!H', len(suites)) + suites + b'\x01\x00')
    hs = (b'\x01' + len(body).to_bytes(3, 'big') + struct.pack('!H', seq) + b'\x00\x00\x00' +
          len(body).to_bytes(3, 'big') + body)
    return b'\x16\xfe\xfd\x00\x00' + seq.to_bytes(6, 'big') + struct.pack('!H', len(hs)) + hs


def _hello_verify_cookie(d):
    if len(d) < 28 or d[0] != 22 or d[13] != 3:
        raise Fail('not a HelloVerifyRequest: %r' % d[:32])
    return d[28:28 + d[27]]


def test_terminator_show_with_workers_lists_every_meter_once(env):
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, GOOD, echo.addr, extra='workers = 2;', verbose=0)
    clients = []
    for ident in ('meter-0001', 'meter-0002'):
        c = h.gnutls_cli(env, term.port, GOOD[ident], ident, name=ident)
        c.wait_out(r'- Handshake was completed')
        c.send(b'hi\n')
        c.wait_out(rb'\nE:hi\n')
        clients.append(c)
    out = term.ctl('show')
    eq([ln.split(':')[0].strip() for ln in out.splitlines() if ln.startswith('  ')],
       ['meter-0001', 'meter-0002', 'meter-0003'], 'meter lines, sorted by identity')
    one_line(out, r'tunnel t1: terminator, accept %s, connect %s, 2 sessions' % (ADDR, ADDR),
             'tunnel line with workers')
    for ident in ('meter-0001', 'meter-0002'):
        show_line(term, ident, r'established, peer %s, seen %s ago, handshake %s ago \(full\), '
                  r'air in \d+ B/\d+ out \d+ B/\d+, plain in 5 B/1 out 3 B/1, 1 handshake, 0 failures'
                  % (ADDR, AGE, AGE))
    # meter-0001 again from new ports until the kernel hands one to the other
    # worker (each worker then has a session of it): one line adds them up
    for k in range(1, 13):
        again = h.gnutls_cli(env, term.port, GOOD['meter-0001'], 'meter-0001', name='again-%d' % k)
        again.wait_out(r'- Handshake was completed')
        again.send(b'hey\n')
        again.wait_out(rb'\nE:hey\n')
        if [s['identity'] for s in term.established()].count('meter-0001') == 2:
            break
    print('meter-0001 on both workers after %d more sessions' % k, flush=True)
    size = r'(?:\d+ B|\d+\.\d KiB)'
    show_line(term, 'meter-0001', r'established, peer %s, seen %s ago, handshake %s ago \(full\), '
              r'air in %s/\d+ out %s/\d+, plain in %d B/%d out %d B/%d, %d handshakes, 0 failures'
              % (ADDR, AGE, AGE, size, size, 5 + 6 * k, 1 + k, 3 + 4 * k, 1 + k, 1 + k))


# ------------------------------------------------------------ gateway side

def test_gateway_wrong_key(env):
    h.psktund()
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, GOOD, echo.addr, dtls=DTLS, verbose=0)
    m = env.meter(name='meter-0002')
    gw_keys = dict(GOOD, **{'meter-0002': os.urandom(16)})     # not the terminator's
    gw = h.gateway(env, gw_keys, [('meter-0002', m.source)], term.addr, dtls=DTLS, verbose=0)
    m.send(b'reading-000042', gw.addr)
    wait_failed(gw, 1, 'wrong key')
    wait_failed(term, 1, 'wrong key')
    log_line(gw, LOG % ('warning', r'tunnel t1: handshake for meter-0002 with %s failed: '
                                   r'our Finished was not accepted: wrong key\?; retry 1 in \d+ ms'
                                   % re.escape(term.addr)), 'gateway log, wrong key')
    log_line(term, LOG % ('warning', r"tunnel t1: handshake with meter-0002 at %s failed: "
                                     r"the client's Finished did not verify: wrong key\?" % ADDR),
             'terminator log, wrong key (gateway)')
    show_line(gw, 'meter-0002', r'(backoff|resolving|handshaking), peer %s, seen %s ago, no handshake, '
              r'air in \d+ B/[1-9]\d* out \d+ B/[1-9]\d*, plain in 14 B/1 out 0 B/0, 0 handshakes, '
              r'[1-9]\d* failures?, last %s ago: our Finished was not accepted: wrong key\?'
              % (re.escape(m.source), AGE, AGE))
    show_line(term, 'meter-0002', r'no session, peer %s, seen %s ago, no handshake, '
              r'air in \d+ B/[1-9]\d* out \d+ B/[1-9]\d*, plain in 0 B/0 out 0 B/0, 0 handshakes, '
              r"[1-9]\d* failures?, last %s ago: the client's Finished did not verify: wrong key\?"
              % (ADDR, AGE, AGE))
    eq(gw.stats()['handshake_failures.wrong_key'] >= 1, True, 'gateway handshake_failures.wrong_key')


def test_gateway_server_down(env):
    """Nobody listens at `connect` (ICMP port unreachable), or a host that
    swallows everything: both are "no answer from the server"."""
    h.psktund()
    for name, cloud in (('refused', None), ('silent', env.udp())):
        port = cloud.getsockname()[1] if cloud else h.free_udp_port()
        m = env.meter(name='meter-0001-' + name)
        gw = h.gateway(env, GOOD, [('meter-0001', m.source)], '%s:%d' % (h.LO, port), dtls=DTLS,
                       verbose=0, name='gateway-' + name)
        m.send(b'hello', gw.addr)
        wait_failed(gw, 1, 'server down')
        detail = r' \(ICMP: port unreachable\)' if not cloud else ''
        log_line(gw, LOG % ('warning', r'tunnel t1: handshake for meter-0001 with '
                                       r'127\.0\.0\.1:%d failed: no answer from the server%s; '
                                       r'retry 1 in \d+ ms' % (port, detail)),
                 'gateway log, server down (%s)' % name)
        show_line(gw, 'meter-0001', r'(backoff|resolving|handshaking), peer %s, seen %s ago, no handshake, '
                  r'air in 0 B/0 out \d+ B/[1-9]\d*, plain in 5 B/1 out 0 B/0, 0 handshakes, '
                  r'[1-9]\d* failures?, last %s ago: no answer from the server%s'
                  % (re.escape(m.source), AGE, AGE, detail))
        m2 = dump_meter(gw, 'meter-0001')
        eq((m2['last_failure'], m2['failure_detail']),
           ('no_answer', 'ICMP: port unreachable' if not cloud else '-'), 'dump: failure')


def test_gateway_server_ends_the_handshake_with_an_alert(env):
    """openssl s_server that accepts no suite the gateway offers ends the
    handshake with a handshake_failure alert."""
    h.psktund()
    port = h.free_udp_port()
    h.openssl_s_server(env, port, GOOD['meter-0001'], 'meter-0001',
                       extra=['-cipher', 'PSK-AES256-GCM-SHA384'])
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, GOOD, [('meter-0001', m.source)], '%s:%d' % (h.LO, port), dtls=DTLS, verbose=0)
    m.send(b'hello', gw.addr)
    wait_failed(gw, 1, 'alert')
    log_line(gw, LOG % ('warning', r'tunnel t1: handshake for meter-0001 with 127\.0\.0\.1:%d '
                                   r'failed: the server ended the handshake \(alert handshake_failure\); '
                                   r'retry 1 in \d+ ms' % port), 'gateway log, server alert')
    show_line(gw, 'meter-0001', r'(backoff|resolving|handshaking), peer %s, seen %s ago, no handshake, '
              r'air in \d+ B/[1-9]\d* out \d+ B/[1-9]\d*, plain in 5 B/1 out 0 B/0, 0 handshakes, '
              r'[1-9]\d* failures?, last %s ago: the server ended the handshake \(alert handshake_failure\)'
              % (re.escape(m.source), AGE, AGE))
    eq(gw.stats()['handshake_failures.peer_alert'] >= 1, True, 'handshake_failures.peer_alert')


def test_gateway_unprovisioned_source_logged_once(env):
    h.psktund()
    gw = h.gateway(env, GOOD, [('meter-0001', '127.0.0.1:9')], '127.0.0.1:%d' % h.free_udp_port(),
                   verbose=0)
    stranger = env.meter(name='stranger')
    for i in range(5):
        stranger.send(b'who-am-i-%d' % i, gw.addr)
    gw.wait_stat('dropped_unknown', 5)
    log_line(gw, LOG % ('warning', r'tunnel t1: datagram from %s dropped: unknown source '
                                   r'\(no meters entry\)' % re.escape(stranger.source)),
             'gateway log, unprovisioned source (5 datagrams, one line)')
    one_line(gw.ctl('show'), r'    source %s: 5 times, last %s ago' % (re.escape(stranger.source), AGE),
             'gateway show, unprovisioned source')
    show_line(gw, 'meter-0001', 'never seen')
    eq([ln.split('\t')[:6] for ln in gw.ctl('show', '--dump').splitlines() if ln.startswith('unknown')],
       [['unknown', 't1', 'source', '-', stranger.source, '5']], 'dump: unknown lines')


def test_gateway_unknown_identity_from_coap_ep(env):
    h.psktund()
    pdir = h.plugin_dir(env)
    if not os.path.exists(os.path.join(pdir, 'coap.so')):
        raise h.Skip('coap.so not built under PLUGIN_BUILD_DIR')
    port = h.free_udp_port()
    tunnel = dict(name='t1', accept='%s:%d' % (h.LO, port), connect='127.0.0.1:%d' % h.free_udp_port(),
                  plugin='coap', options={'identity': 'query:ep'})
    gw = env.daemon('gateway', 'gateway', [tunnel], GOOD, plugin_dir=pdir, verbose=0)
    m = env.meter()
    for mid in (1, 2):
        m.send(h.coap_get(mid, b't', 'time', ('ep=meter-9999',)), (h.LO, port))
    gw.wait_stat('dropped_unknown', 2)
    log_line(gw, LOG % ('warning', r'tunnel t1: datagram from %s dropped: unknown identity '
                                   r'meter-9999 \(not in the key file\)' % re.escape(m.source)),
             'gateway log, unknown ep=')
    one_line(gw.ctl('show'), r'    identity meter-9999 from %s: 2 times, last %s ago'
             % (re.escape(m.source), AGE), 'gateway show, unknown ep=')


def test_meter_silent_and_traffic_on_the_air(env):
    """A meter that stopped sending: its session idles out (the log says so)
    and `show` keeps what it did. On the air, a datagram costs its payload
    plus 29 bytes (AES-128-CCM-8: 13 header, 8 explicit nonce, 8 tag), on
    both ends; the cookie exchange (2 datagrams) is the terminator's alone."""
    h.psktund()
    echo = env.echo(prefix=b'E:')
    # the gateway idles out first: its close_notify ends the terminator's session
    term = h.terminator(env, GOOD, echo.addr, dtls={'retransmit_ms': 5000, 'idle_timeout_s': 60},
                        verbose=0)
    m = env.meter(name='meter-0001')
    gw = h.gateway(env, GOOD, [('meter-0001', m.source), ('meter-0002', '127.0.0.1:9')], term.addr,
                   dtls={'retransmit_ms': 5000, 'idle_timeout_s': 3}, verbose=0)
    eq(m.request(b'r' * 100, gw.addr), b'E:' + b'r' * 100, 'first reading')
    g0, t0 = dump_meter(gw, 'meter-0001'), dump_meter(term, 'meter-0001')
    eq(m.request(b's' * 200, gw.addr), b'E:' + b's' * 200, 'second reading')
    g1, t1 = dump_meter(gw, 'meter-0001'), dump_meter(term, 'meter-0001')

    def delta(a, b, k):
        return int(b[k]) - int(a[k])
    eq([delta(g0, g1, k) for k in ('air_out_bytes', 'air_out', 'air_in_bytes', 'air_in')],
       [229, 1, 231, 1], 'gateway: on the air for one 200-byte reading and its 202-byte answer')
    eq([delta(t0, t1, k) for k in ('air_in_bytes', 'air_in', 'air_out_bytes', 'air_out')],
       [229, 1, 231, 1], 'terminator: on the air for the same')
    eq([int(g1[k]) - int(t1[k]) for k in ('air_out', 'air_in')], [1, 1],
       'datagrams the gateway counts and the terminator cannot (the first ClientHello, '
       'the HelloVerifyRequest)')
    eq([g1[k] for k in ('plain_in_bytes', 'plain_in', 'plain_out_bytes', 'plain_out')],
       ['300', '2', '304', '2'], 'gateway plain side')
    eq([t1[k] for k in ('plain_out_bytes', 'plain_out', 'plain_in_bytes', 'plain_in')],
       ['300', '2', '304', '2'], 'terminator plain side')

    gw.wait_log(r'session meter-0001 down \(idle; was established\)', 20)
    log_line(gw, LOG % ('notice', r'tunnel t1: session meter-0001 down '
                                   r'\(idle; was established\)'), 'gateway log, meter silent')
    show_line(gw, 'meter-0001', r'no session, peer %s, seen %s ago, handshake %s ago \(full\), '
              r'air in %s B/%s out %s B/%s, plain in 300 B/2 out 304 B/2, 1 handshake, 0 failures'
              % (re.escape(m.source), AGE, AGE, g1['air_in_bytes'], g1['air_in'], r'\d+',
                 int(g1['air_out']) + 1))
    show_line(gw, 'meter-0002', 'never seen')
    g2 = dump_meter(gw, 'meter-0001')
    # the session's counters moved to the meter's record when it closed (+ close_notify)
    eq([int(g2[k]) - int(g1[k]) for k in ('air_in', 'air_out', 'plain_in', 'plain_out')],
       [0, 1, 0, 0], 'gateway counters kept after the session closed (and its close_notify)')


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""figures: the measured numbers for issue 4's closing note (not part of
make check; takes a few minutes).  Run from a build tree's environment:

    PSKTUND=$B/agent/psktund PSKTUNCTL=$B/agent/psktunctl PLUGIN_BUILD_DIR=$B \\
        python3 tests/integration/figures.py [loss rebind restart flood bytes]

  loss     success rate at 25% loss (+10% dup, 10% reorder, 10-100 ms delay):
           first try vs with the meter's retries, handshake times
  rebind   time from a NAT rebinding to each meter's next answer
  restart  time to recover after a terminator kill -9 / SIGTERM and restart
  flood    terminator memory (VmRSS) growth under a junk and ClientHello flood
  bytes    handshake bytes and datagrams on the wire (full, session-ID resumed;
           with the cookie exchange and without it) against psktund,
           openssl s_server and libcoap servers, counted by a UDP proxy
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import resil  # noqa: E402
import test_flood  # noqa: E402
import test_lossy_link  # noqa: E402
import test_rebinding  # noqa: E402


def scenario(name, fn, *args, **kw):
    env = h.Env(name)
    try:
        return fn(env, *args, **kw)
    except h.Skip as e:
        print('%s: skipped (%s)' % (name, e), flush=True)
    except Exception as e:
        print('%s: FAILED: %r' % (name, e), flush=True)
        print('\n'.join(h._log_lines[-60:]))
    finally:
        errs = env.close()
        if errs:
            print('%s: cleanup: %s' % (name, errs))
        h._log_lines.clear()


# ----------------------------------------------------------------- loss

def loss():
    print('== success rate at 25% loss (both ways), 10% dup, 10% reorder, 10-100 ms delay', flush=True)
    tot = dict(requests=0, first_try=0, answered=0, sends=0)
    hs = []
    for seed in (11, 12, 13):
        r = scenario('loss-%d' % seed, test_lossy_link.lossy_terminator_run, n_meters=5,
                     n_requests=10, seed=seed, every=1.0, tries=30, join_s=140)
        if r:
            for k in tot:
                tot[k] += r['summary'][k]
            hs += [ms for _, ms, _ in r['handshakes']]
    print('TOTAL psktun terminator: %d requests, answered %d (%.1f%%), first try %d (%.1f%%), '
          '%.2f sends per request; handshake time %s' % (
              tot['requests'], tot['answered'], resil.pct(tot['answered'], tot['requests']),
              tot['first_try'], resil.pct(tot['first_try'], tot['requests']),
              tot['sends'] / max(1, tot['requests']), resil.stats_line(hs, 'ms')), flush=True)
    for flavour in ('openssl', 'gnutls'):
        scenario('loss-coap-' + flavour, test_lossy_link.lossy_libcoap_run, flavour, n_meters=3,
                 n_requests=3, seed=21)


# ----------------------------------------------------------------- rebind / restart

def rebind():
    print('== NAT rebinding (badlink gives every flow a new source port every 2.5 s)', flush=True)
    scenario('rebind', test_rebinding.rebinding_run, n_rebinds=8)


def restart():
    print('== terminator restart under traffic (down 2 s; meters resend every 0.5 s)', flush=True)
    for kill in (True, False):
        scenario('restart', test_rebinding.restart_run, kill=kill)
    print('== terminator restart, down 0 s', flush=True)
    for kill in (True, False):
        scenario('restart', test_rebinding.restart_run, kill=kill, down_s=0.0)


# ----------------------------------------------------------------- flood

def flood():
    print('== junk and ClientHello flood at the terminator (max_handshakes %d, handshake_rate %d/s '
          'burst %d per source IP)' % (test_flood.MAX_HANDSHAKES, test_flood.RATE, test_flood.BURST),
          flush=True)
    for rounds in (100, 400):
        scenario('flood', test_flood.flood_run, rounds=rounds)


# ----------------------------------------------------------------- bytes

def _fmt(c):
    return '%4d bytes in %d datagrams (up %d/%dB, down %d/%dB), %d flights%s' % (
        c['bytes'], c['datagrams'], c['up'][0], c['up'][1], c['down'][0], c['down'][1],
        c['flights'], ', cookie exchange' if c['cookie'] else ', no cookie exchange')


def _without_cookie(entries):
    """The same handshake minus the cookie exchange: drop the HelloVerifyRequest and
    the ClientHello that carried the cookie (the first ClientHello stays)."""
    out, seen_hvr = [], False
    for e in entries:
        recs = e[3]
        if any(r[2] == resil.HS_HELLO_VERIFY for r in recs):
            seen_hvr = True
            continue
        if seen_hvr and e[1] == 'up' and any(r[2] == resil.HS_CLIENT_HELLO for r in recs):
            seen_hvr = False
            continue
        out.append(e)
    return out


def _measure(env, label, connect_port, keys, meter_payload, priority=None, rounds=2):
    """gateway -> counter -> server at connect_port: a full handshake, then
    (after an idle close) `rounds - 1` resumed ones."""
    cnt = resil.DatagramCounter((h.LO, connect_port))
    env.defer(cnt.close)
    m = env.meter(name='meter-0001')
    dtls = {'idle_timeout_s': 1}
    if priority:
        dtls['priority'] = priority
    gw = h.gateway(env, keys, [('meter-0001', m.source)], cnt.addr, dtls=dtls)
    for i in range(rounds):
        mark = cnt.mark()
        before = gw.stats()
        m.send(meter_payload(i), gw.addr)
        gw.wait_stat('handshakes_completed', before['handshakes_completed'] + 1)
        kind = 'resumed' if gw.stats()['handshakes_resumed'] > before['handshakes_resumed'] \
            else 'full'
        h.wait_until(lambda: gw.stats()['sessions'] == 0, 10, 'idle close')
        e = cnt.since(mark)
        print('%-42s %-10s %s' % (label, kind, _fmt(resil.handshake_cost(e))), flush=True)
        if resil.handshake_cost(e)['cookie']:
            print('%-42s %-10s %s  (derived)' % (label, kind + '-nocookie',
                                                  _fmt(resil.handshake_cost(_without_cookie(e)))),
                  flush=True)


def bytes_():
    print('== handshake cost on the wire (DTLS 1.2, PSK, AES-128-CCM-8; UDP payload bytes, '
          'records of the handshake only: no application data, no close_notify)', flush=True)
    key = os.urandom(16)

    def psktun(env):
        h.psktund()
        echo = env.echo()
        term = h.terminator(env, {'meter-0001': key}, echo.addr)
        _measure(env, 'psktund gateway -> psktund terminator', term.port, {'meter-0001': key},
                 lambda i: b'hello-%d' % i, rounds=3)
    scenario('bytes-psktun', psktun)

    def s_server(env, priority=None, label='psktund gateway -> openssl s_server'):
        port = h.free_udp_port()
        h.openssl_s_server(env, port, key, 'meter-0001', quiet=True)
        _measure(env, label, port, {'meter-0001': key}, lambda i: b'hello-%d\n' % i,
                 priority=priority, rounds=3)
    scenario('bytes-s_server', s_server)
    scenario('bytes-s_server-tickets', s_server,
             priority='NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+COMP-NULL:+SIGN-ECDSA-SHA256',
             label='  ... with session tickets (priority w/o %NO_TICKETS)')

    ckeys = {'meter-0001': 'figures-coap-key-0001-abc'}
    for flavour in ('openssl', 'gnutls'):
        def coap(env, flavour=flavour):
            port = h.free_port_pair()
            h.libcoap_server(env, flavour, port, h.write_coap_idfile(env.path('ids'), ckeys))
            _measure(env, 'psktund gateway -> coap-server-%s' % flavour, port + 1, ckeys,
                     lambda i: h.coap_get(0x100 + i, b't', '/'), rounds=3)
        scenario('bytes-coap-' + flavour, coap)


def main(argv):
    h.psktund()
    what = argv or ['bytes', 'rebind', 'restart', 'flood', 'loss']
    t0 = time.monotonic()
    for w in what:
        {'loss': loss, 'rebind': rebind, 'restart': restart, 'flood': flood, 'bytes': bytes_}[w]()
    print('(%.0f s)' % (time.monotonic() - t0))


if __name__ == '__main__':
    main(sys.argv[1:])

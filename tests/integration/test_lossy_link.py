#!/usr/bin/env python3
"""A lossy NB-IoT link: 25% loss both ways, duplication, reordering and
delay (badlink.py) between the psktund gateway and the DTLS server.

  * gateway -> badlink -> psktund terminator -> echo: several meters at once,
    each asking a series of requests with its own retry-on-timeout (as a
    meter or CoAP would): every meter's handshake completes, every request
    is answered, and each meter gets back exactly the answers to what it asked.
  * gateway -> badlink -> coap-server-openssl (one key per identity, -i;
    figures.py also runs coap-server-gnutls): coap-client-notls as the meters (each from its own
    127.0.0.x source), doing CoAP's own retransmission through the gateway;
    a meter whose coap-client gives up runs it again (bounded): every
    request is answered with the server's payload.

Each prints the measured success rate (first try vs with retries) and the
handshake times.  Exit 0: all passed, 1: a test failed, 77: psktund or a peer missing."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402
from badlink import BadLink  # noqa: E402
import resil  # noqa: E402

LOSS = dict(loss=0.25, dup=0.1, reorder=0.1, delay_ms=(10, 100))
# Short DTLS timers, so a handshake that loses a flight retransmits soon and
# one that gives up backs off (2 s, jittered) and tries again within the test.
GW_DTLS = {'retransmit_ms': 300, 'handshake_timeout_s': 12}
HS_RX = re.compile(r'session (\S+) up \(to cloud(, resumed)?, (\d+) ms\)')


def handshake_times(gw):
    """[(identity, ms, resumed)] from the gateway's 'session ... up' lines."""
    return [(m.group(1), int(m.group(3)), bool(m.group(2))) for m in HS_RX.finditer(gw.log_text())]


# How long a meter keeps asking.  Over this link a handshake attempt fails now
# and then: the final flight and every resend of it lost one way or the
# other (each resend gets through with 0.75 x 0.75, and GnuTLS answers a
# resend only when its own, doubling, retransmission timer allows).  A failed
# attempt costs up to 19 s (GnuTLS checks handshake_timeout_s, 12 s, at its
# next retransmission: 0.3 + 0.6 + ... + 9.6 = 18.9 s), then a backoff of
# 2 s (doubling), and the next attempt may take as long.  30 tries (30 s)
# did not cover one failed attempt and a slow next one: under
# AddressSanitizer on a busy machine a meter went unanswered so in 2 runs of
# 2 (the gateway's log: failed at 19.1 s, up at 31.9 s).  The seed fixes
# badlink's draws but not which datagram meets which draw (that depends on
# timing).  The property tested is that every request is answered, not how
# fast (that is printed): a meter asks for 4 minutes, room for five failed
# attempts in a row, and a passing run never waits for that.
TRIES = 240


def lossy_terminator_run(env, n_meters=5, n_requests=5, seed=1, every=1.0, tries=TRIES,
                         join_s=None, quiet=False):
    """The scenario behind the test (and figures.py); returns the measurements."""
    h.psktund()
    keys = {'meter-%04d' % (i + 1): os.urandom(16) for i in range(n_meters)}
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr, dtls=dict(GW_DTLS))
    bl = BadLink(upstream=(h.LO, term.port), seed=seed, **LOSS)
    env.defer(bl.stop)
    meters = [resil.RetryMeter(env, k) for k in keys]
    gw = h.gateway(env, keys, [(k, m.source) for k, m in zip(keys, meters)],
                   '%s:%d' % bl.listen_addr, dtls=dict(GW_DTLS))
    t0 = time.monotonic()
    threads, errors = resil.run_meters(meters, gw.addr, n_requests, every=every, tries=tries)
    resil.join_all(threads, errors, join_s or every * tries * n_requests + h.T)
    elapsed = time.monotonic() - t0
    s = resil.summary(meters)
    hs = handshake_times(gw)
    out = dict(summary=s, handshakes=hs, elapsed=elapsed, badlink=bl.stats(), gw=gw.stats(),
               term=term.stats(), meters=meters, gw_daemon=gw, term_daemon=term, keys=keys)
    if not quiet:
        print('lossy link (psktun terminator, seed %s): %d meters x %d requests: answered %d/%d '
              '(%.0f%%), first try %d/%d (%.0f%%), %d sends; handshakes %d completed, %d failed, '
              'time to complete %s; badlink up lost %d/%d, down lost %d/%d; %.1fs' % (
                  seed, n_meters, n_requests, s['answered'], s['requests'],
                  resil.pct(s['answered'], s['requests']), s['first_try'], s['requests'],
                  resil.pct(s['first_try'], s['requests']), s['sends'],
                  out['gw']['handshakes_completed'], out['gw']['handshakes_failed'],
                  resil.stats_line([ms for _, ms, _ in hs], 'ms'),
                  out['badlink']['up']['dropped_loss'], out['badlink']['up']['received'],
                  out['badlink']['down']['dropped_loss'], out['badlink']['down']['received'],
                  elapsed), flush=True)
    return out


def test_lossy_link_to_psktun_terminator_every_request_answered(env):
    r = lossy_terminator_run(env)
    meters, gw, term = r['meters'], r['gw_daemon'], r['term_daemon']
    resil.check_all_answered(meters)
    # every meter's handshake completed: one established session each, both ends
    eq(sorted((s['identity'], s['state']) for s in gw.sessions()),
       [(k, 'established') for k in sorted(r['keys'])], 'gateway sessions')
    eq(sorted({s['identity'] for s in term.established()}), sorted(r['keys']),
       'terminator established identities')
    eq(sorted({i for i, _, _ in r['handshakes']}), sorted(r['keys']),
       'identities with a completed gateway handshake')
    g = gw.stats()
    # every datagram a meter sent entered the gateway; none was refused
    eq((g['plain_in'], g['dropped_unknown'], g['dropped_malformed'], g['dropped_policy']),
       (r['summary']['sends'], 0, 0, 0), 'gateway plain_in, dropped_unknown/malformed/policy')
    bls = r['badlink']
    if not (bls['up']['dropped_loss'] and bls['down']['dropped_loss'] and bls['up']['duplicated']
            and bls['down']['duplicated'] and bls['up']['reordered'] + bls['down']['reordered']):
        raise Fail('the link was not impaired as configured: %r' % bls)


# ----------------------------------------------------------------- libcoap

def lossy_libcoap_run(env, flavour, n_meters=2, n_requests=2, seed=2, runs_max=4, quiet=False):
    COAP_KEYS = {'%s-%04d' % (flavour, i + 1): 'lossy-coap-key-%04d-xyz' % (i + 1)
                 for i in range(n_meters)}
    h.psktund()
    port = h.free_port_pair()
    h.libcoap_server(env, flavour, port, h.write_coap_idfile(env.path('ids-' + flavour), COAP_KEYS))
    # what GET /time?... cannot be compared (a clock); GET / is a fixed text
    rc, direct, _ = h.coap_client(env, 'notls', 'coap://%s:%d/' % (h.LO, port),
                                  name='direct-' + flavour)
    eq(rc, 0, 'direct coap-client-notls exit code')
    if not direct.startswith('This is a test server'):
        raise Fail('unexpected / payload %r' % direct)
    bl = BadLink(upstream=(h.LO, port + 1), seed=seed, **LOSS)
    env.defer(bl.stop)
    # each meter is coap-client-notls from its own loopback address
    base = 2 if flavour == 'gnutls' else 2 + n_meters
    sources = {k: '127.0.0.%d' % (base + i) for i, k in enumerate(COAP_KEYS)}
    gw = h.gateway(env, COAP_KEYS, list(sources.items()), '%s:%d' % bl.listen_addr,
                   dtls=dict(GW_DTLS), name='gateway-' + flavour)
    results = {k: [] for k in COAP_KEYS}       # per request: coap-client runs needed (0: never)
    errors = []

    def meter(ident):
        try:
            for i in range(n_requests):
                for run in range(1, runs_max + 1):
                    t0 = time.monotonic()
                    rc, payload, _ = h.coap_client(
                        env, 'notls', 'coap://%s/' % gw.addr, timeout_s=50,
                        extra=('-a', sources[ident]), name='%s-req%d-run%d' % (ident, i, run))
                    dt = time.monotonic() - t0
                    if rc == 0 and payload == direct:
                        results[ident].append((run, dt))
                        break
                    h.log('%s request %d run %d: rc %d payload %r' % (ident, i, run, rc, payload))
                else:
                    results[ident].append((0, None))
        except Exception as e:
            errors.append('%s: %r' % (ident, e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=meter, args=(k,), daemon=True) for k in COAP_KEYS]
    for t in threads:
        t.start()
    # a cap: each coap-client run ends by itself within its 50 s
    resil.join_all(threads, errors, n_requests * runs_max * (50 + 10) + h.T)
    elapsed = time.monotonic() - t0
    allr = [r for rs in results.values() for r in rs]
    first = sum(1 for run, _ in allr if run == 1)
    ok = sum(1 for run, _ in allr if run)
    hs = handshake_times(gw)
    if not quiet:
        print('lossy link (coap-server-%s, coap-client-notls CoAP retransmission, seed %s): %d '
              'requests: answered %d (%.0f%%), by the first coap-client run %d (%.0f%%); request '
              'time %s; gateway handshakes %d completed, %d failed, time to complete %s; %.1fs' % (
                  flavour, seed, len(allr), ok, resil.pct(ok, len(allr)), first,
                  resil.pct(first, len(allr)), resil.stats_line([dt for _, dt in allr if dt]),
                  gw.stats()['handshakes_completed'], gw.stats()['handshakes_failed'],
                  resil.stats_line([ms for _, ms, _ in hs], 'ms'), elapsed), flush=True)
    return dict(results=results, gw_daemon=gw, handshakes=hs, badlink=bl.stats(), keys=COAP_KEYS)


def _check_libcoap(r):
    for ident, rs in r['results'].items():
        lost = [i for i, (run, _) in enumerate(rs) if not run]
        if lost:
            raise Fail('%s: request(s) %r never answered' % (ident, lost))
    gw = r['gw_daemon']
    eq(sorted({i for i, _, _ in r['handshakes']}), sorted(r['keys']),
       'identities with a completed gateway handshake')
    eq(sorted(s['identity'] for s in gw.sessions()), sorted(r['keys']), 'gateway sessions')
    g = gw.stats()
    eq((g['dropped_unknown'], g['dropped_malformed'], g['dropped_policy']), (0, 0, 0),
       'gateway dropped_unknown/malformed/policy')


def test_lossy_link_to_coap_server_openssl_coap_retransmission(env):
    """coap-server-openssl only: coap-server-gnutls (libcoap 4.3.1) often ends a
    handshake itself under this loss (the gateway sees GNUTLS_E_SESSION_EOF
    and backs off, 2 s doubling), so a meter there may need minutes: too slow
    and too variable for make check.  figures.py measures it."""
    _check_libcoap(lossy_libcoap_run(env, 'openssl'))


if __name__ == '__main__':
    h.main(globals())

#!/usr/bin/env python3
"""A real DTLS 1.2 PSK pair through the bad-link harness.

openssl s_server <- badlink (25% loss, 10% dup, 10% reorder, 20-200 ms delay)
<- openssl s_client: for each seed the handshake completes on both ends and a
line of application data reaches the server.  Application data is not
retransmitted by DTLS, so the client sends a numbered line every 0.5 s until
one arrives.

Exit 0: pass, 1: fail, 77: skipped (no openssl, or no DTLS 1.2 PSK-AES128-CCM8).

    test_badlink_dtls.py                 the default seeds (1 2 3), in parallel
    test_badlink_dtls.py --seeds 1-20    measure: prints the success rate
    test_badlink_dtls.py --loss 0.25 --dup 0.1 --reorder 0.1 --deadline 180

OpenSSL 3.0 flags that matter: -timeout on both ends.  Without it s_client's
socket is blocking, and when OpenSSL discards a stale or duplicated record
(a retransmitted server flight arriving after the handshake finished) it goes
back to recvfrom() and blocks there for good: the handshake "completes" but no
data is ever sent.  With -timeout the socket has a receive timeout and the
loop goes on.  -mtu only changes how records are packed into datagrams.
"""

import argparse
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from badlink import BadLink  # noqa: E402

CIPHER = 'PSK-AES128-CCM8'
SKIP = 77


class Proc:
    """A child process whose merged output is collected line by line."""

    def __init__(self, argv, name):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.t0 = time.monotonic()
        self.reader = threading.Thread(target=self._read, name='read-' + name, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.lines.append((time.monotonic() - self.t0, line.rstrip('\n')))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def find(self, pred):
        with self.cond:
            for t, l in self.lines:
                if pred(l):
                    return t, l
        return None

    def wait_line(self, pred, deadline):
        """Await an output line matching pred before the monotonic deadline."""
        with self.cond:
            while True:
                for t, l in self.lines:
                    if pred(l):
                        return t, l
                if self.p.poll() is not None and not self.reader.is_alive():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def send(self, text):
        try:
            self.p.stdin.write(text)
            self.p.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.reader.join(5)
        self.p.stdout.close()

    def tail(self, n=40):
        with self.cond:
            return '\n'.join('  %s %7.2f %s' % (self.name, t, l) for t, l in self.lines[-n:])


def openssl_usable(openssl):
    try:
        r = subprocess.run([openssl, 'ciphers', '-V', CIPHER], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and CIPHER in r.stdout


def run_one(openssl, seed, a):
    """One handshake and data line through a fresh proxy; returns a result dict."""
    key = os.urandom(16).hex()
    common = ['-dtls1_2', '-psk', key, '-psk_identity', 'meter-%d' % seed,
              '-cipher', CIPHER] + a.openssl_flags
    res = {'seed': seed, 'ok': False, 'handshake_s': None, 'data_s': None, 'lines_sent': 0}
    srv = Proc([openssl, 's_server', '-nocert', '-accept', '127.0.0.1:0'] + common,
               's_server')
    cli = None
    bl = None
    try:
        deadline = time.monotonic() + 60     # a cap: s_server starts in well under a second
        acc = srv.wait_line(lambda l: l.startswith('ACCEPT'), deadline)
        if acc is None:
            res['why'] = 's_server did not start'
            return res
        port = int(acc[1].rpartition(':')[2])
        bl = BadLink(upstream=('127.0.0.1', port), loss=a.loss, dup=a.dup, reorder=a.reorder,
                     delay_ms=(a.delay_lo, a.delay_hi), seed=seed)
        t0 = time.monotonic()
        deadline = t0 + a.deadline
        cli = Proc([openssl, 's_client', '-connect', '127.0.0.1:%d' % bl.port] + common,
                   's_client')
        hs_c = cli.wait_line(lambda l: ('Cipher is ' + CIPHER) in l, deadline)
        hs_s = srv.wait_line(lambda l: ('CIPHER is ' + CIPHER) in l, deadline)
        if hs_c is None or hs_s is None:
            res['why'] = 'handshake did not complete (client %s, server %s)' % (
                'done' if hs_c else 'not done', 'done' if hs_s else 'not done')
            return res
        res['handshake_s'] = round(time.monotonic() - t0, 2)
        n = 0
        while time.monotonic() < deadline:
            if not cli.send('badlink-data-%d-%d\n' % (seed, n)):
                break
            n += 1
            got = srv.wait_line(lambda l: l.startswith('badlink-data-%d-' % seed),
                                min(deadline, time.monotonic() + 0.5))
            if got is not None:
                res['data_s'] = round(time.monotonic() - t0, 2)
                res['ok'] = True
                break
        res['lines_sent'] = n
        if not res['ok']:
            res['why'] = 'no data line reached the server'
        return res
    except Exception as e:   # reported as a failure of this seed
        res['why'] = 'exception: %r' % (e,)
        return res
    finally:
        if cli is not None:
            cli.stop()
        srv.stop()
        if bl is not None:
            bl.stop()
            s = bl.stats()
            res['stats'] = 'up %d in/%d lost/%d dup/%d reord, down %d in/%d lost/%d dup/%d reord' % (
                s['up']['received'], s['up']['dropped_loss'], s['up']['duplicated'],
                s['up']['reordered'], s['down']['received'], s['down']['dropped_loss'],
                s['down']['duplicated'], s['down']['reordered'])
        if not res['ok']:
            res['log'] = (cli.tail() + '\n' if cli else '') + srv.tail()


def parse_seeds(text):
    out = []
    for part in text.split(','):
        lo, _, hi = part.partition('-')
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--seeds', default='1-3', help='e.g. 1-3 or 1,5,9 (default 1-3)')
    ap.add_argument('--loss', type=float, default=0.25)
    ap.add_argument('--dup', type=float, default=0.1)
    ap.add_argument('--reorder', type=float, default=0.1)
    ap.add_argument('--delay-lo', type=float, default=20)
    ap.add_argument('--delay-hi', type=float, default=200)
    ap.add_argument('--deadline', type=float, default=180,
                    help='seconds for handshake + data, per seed (OpenSSL backs off to 60 s)')
    ap.add_argument('--parallel', type=int, default=10)
    ap.add_argument('--openssl-flags', default='-timeout',
                    help='extra flags for both s_server and s_client (default: -timeout)')
    ap.add_argument('--min-success', type=float, default=1.0,
                    help='fraction of seeds that must succeed (default: all)')
    a = ap.parse_args(argv[1:])
    a.openssl_flags = a.openssl_flags.split()

    openssl = shutil.which('openssl')
    if openssl is None or not openssl_usable(openssl):
        print('SKIP: openssl with DTLS 1.2 and %s not found' % CIPHER)
        return SKIP
    ver = subprocess.run([openssl, 'version'], capture_output=True, text=True).stdout.strip()
    seeds = parse_seeds(a.seeds)
    print('%s; loss %.2f dup %.2f reorder %.2f delay %g-%g ms; flags %s; seeds %s'
          % (ver, a.loss, a.dup, a.reorder, a.delay_lo, a.delay_hi,
             ' '.join(a.openssl_flags), a.seeds), flush=True)

    base_threads = threading.active_count()
    results = queue.Queue()
    todo = list(seeds)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                seed = todo.pop(0)
            results.put(run_one(openssl, seed, a))

    workers = [threading.Thread(target=worker, name='seed-worker')
               for _ in range(max(1, min(a.parallel, len(seeds))))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    res = sorted((results.get() for _ in seeds), key=lambda r: r['seed'])

    ok = 0
    for r in res:
        ok += r['ok']
        print('%s seed %d: handshake %s s, data %s s, %d line(s) sent; %s%s' % (
            'PASS' if r['ok'] else 'FAIL', r['seed'], r['handshake_s'], r['data_s'],
            r['lines_sent'], r.get('stats', ''), '' if r['ok'] else '; ' + r.get('why', '')))
        if not r['ok'] and 'log' in r:
            print(r['log'])
    hs = sorted(r['handshake_s'] for r in res if r['handshake_s'] is not None)
    print('%d/%d seeds succeeded (%.0f%%)%s' % (
        ok, len(res), 100.0 * ok / len(res),
        '; handshake median %.1f s, max %.1f s' % (hs[len(hs) // 2], hs[-1]) if hs else ''))
    if threading.active_count() != base_threads:
        print('FAIL: leaked threads %r' % threading.enumerate())
        return 1
    return 0 if ok >= a.min_success * len(res) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))

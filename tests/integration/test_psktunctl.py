#!/usr/bin/env python3
"""psktunctl: genkey makes key file lines psktund accepts, for one meter or a
fleet, into a key file it creates 0600 and never widens, refusing identities the
file already holds; metrics is the stats in Prometheus text format, and misuse
exits 2 with the usage. The control socket
drops clients that stay silent, so they cannot lock psktunctl out.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq  # noqa: E402


def ctl(*args, stdin=b''):
    r = subprocess.run([h.psktunctl()] + list(args), capture_output=True, timeout=h.T,
                       input=stdin, preexec_fn=lambda: os.umask(0o022))   # a usual login umask
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def read_keys(path):
    """{identity: key bytes} of a key file, in file order; exact line format checked."""
    keys = {}
    with open(path) as f:
        for line in f:
            m = re.fullmatch(r'([^:#\s][^:]*):([0-9a-f]{32}|[0-9a-f]{44})\n', line)
            if not m:
                raise h.Fail('key file line %r' % line)
            keys[m.group(1)] = bytes.fromhex(m.group(2))
    return keys


def file_state(path):
    st = os.stat(path)
    with open(path, 'rb') as f:
        return st.st_mode & 0o7777, f.read()


def test_genkey_prints_a_fresh_16_byte_key_line(env):
    h.psktund()
    rc, out1, _ = ctl('genkey', 'meter-0001')
    eq(rc, 0, 'exit code')
    if not re.fullmatch(r'meter-0001:[0-9a-f]{32}\n', out1):
        raise h.Fail('genkey printed %r' % out1)
    _, out2, _ = ctl('genkey', 'meter-0001')
    if out1 == out2:
        raise h.Fail('two keys in a row are the same')
    keys = {line.split(':')[0]: bytes.fromhex(line.split(':')[1]) for line in (out1.strip(),)}
    term = h.terminator(env, keys, '127.0.0.1:%d' % h.free_udp_port())   # psktund accepts the line
    eq(term.stats()['sessions'], 0, 'sessions')


def test_genkey_refuses_an_identity_with_a_colon(env):
    h.psktund()
    rc, out, err = ctl('genkey', 'bad:name')
    eq((rc, out), (2, ''), 'exit code and output')
    if "no ':'" not in err:
        raise h.Fail('no reason given: %r' % err)


def test_genkey_writes_a_fleet_into_a_new_key_file_0600_that_both_ends_load(env):
    h.psktund()
    path = env.path('fleet.psk')
    rc, out, err = ctl('genkey', '-o', path, '-p', 'meter-', '-n', '300')
    eq((rc, out, err), (0, '', 'psktunctl: wrote 300 keys to %s\n' % path), 'exit code, stdout, stderr')
    eq(file_state(path)[0], 0o600, 'mode of the new key file (umask 022)')
    keys = read_keys(path)
    eq(list(keys), ['meter-%04d' % i for i in range(1, 301)], 'identities, in order')
    eq(len(set(keys.values())), 300, 'distinct keys')
    # More meters later: from stdin (comments and blank lines skipped) and the command line
    rc, out, err = ctl('genkey', '-o', path, '-', 'meter-0400', stdin=b'# batch 2\nmeter-0301\n\n  meter-0302 \n')
    eq((rc, out, err), (0, '', 'psktunctl: added 3 keys to %s\n' % path), 'exit code, stdout, stderr')
    eq(file_state(path)[0], 0o600, 'mode after appending')
    keys = read_keys(path)
    eq(list(keys)[300:], ['meter-0301', 'meter-0302', 'meter-0400'], 'appended identities')
    # psktund takes the file as it is (mode included)
    conf = env.write('check.conf', h.config_text('terminator', keys=path, tunnels=[dict(
        name='t1', accept='127.0.0.1:%d' % h.free_udp_port(), connect='127.0.0.1:9')]))
    eq(h.check_config(conf)[:2], (0, 'configuration OK\n'), 'psktund -n on the generated key file')
    # The same lines on both ends (what README's provisioning workflow does)
    m = env.meter(name='meter-0150')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0150', m.source)], term.addr)
    eq(m.request(b'x', gw.addr), b'E:x', 'echo through both ends with the generated key')


def test_genkey_keeps_an_existing_files_mode_and_refuses_identities_it_has(env):
    h.psktund()
    path = env.path('keys.psk')
    with open(path, 'w') as f:
        f.write('# site A\nmeter-0001:%s' % os.urandom(16).hex())     # no final newline
    os.chmod(path, 0o640)
    rc, _, err = ctl('genkey', '-o', path, 'meter-0002')
    eq((rc, err), (0, 'psktunctl: added 1 key to %s\n' % path), 'exit code, stderr')
    mode, text = file_state(path)
    eq(mode, 0o640, 'mode of the existing key file')
    lines = text.decode().split('\n')
    eq((len(lines), lines[2][:11], lines[3]), (4, 'meter-0002:', ''), 'line count, third line, end')
    before = file_state(path)
    for args, stdin, want in (
            (('meter-0003', 'meter-0001'), b'', "psktunctl: %s already has a key for 'meter-0001'\n" % path),
            (('-',), b'meter-0009\nmeter-0009\n', "psktunctl: identity 'meter-0009' is asked for more than once\n"),
            (('-p', 'meter-000', '-n', '2', '-w', '1'), b'', "psktunctl: %s already has a key for 'meter-0001'\n"
             "psktunctl: %s already has a key for 'meter-0002'\n" % (path, path))):
        rc, out, err = ctl('genkey', '-o', path, *args, stdin=stdin)
        eq((rc, out, err), (1, '', want + 'psktunctl: no key was made\n'), 'genkey %r' % (args,))
        eq(file_state(path), before, 'key file after a refused genkey %r' % (args,))
    os.chmod(path, 0o644)
    rc, _, err = ctl('genkey', '-o', path, 'meter-0004')
    eq(rc, 1, 'exit code for a key file others can read')
    if 'mode 0644' not in err or 'chmod 600' not in err:
        raise h.Fail('no reason given: %r' % err)
    eq(file_state(path), (0o644, before[1]), 'mode and contents after refusing an open key file')
    rc, _, _ = ctl('genkey', '-o', env.path('new.psk'), 'ok', 'bad:one')
    eq((rc, os.path.exists(env.path('new.psk'))), (2, False), 'exit code, a key file left behind')


def test_genkey_ascii_keys_work_with_libcoaps_coap_client(env):
    """libcoap 4.3.1's coap-client -k takes the key's bytes as written: the hex of
    a key file line does not work, with or without 0x; an -a key's text does."""
    h.psktund()
    h.need('coap-client-gnutls', 'coap-server-notls')
    path = env.path('keys.psk')
    rc, _, _ = ctl('genkey', '-a', '-o', path, 'meter-0001')
    eq(rc, 0, 'exit code')
    keys = read_keys(path)
    text = keys['meter-0001'].decode('ascii')
    if not re.fullmatch(r'[A-Za-z0-9_-]{22}', text):
        raise h.Fail('-a key %r' % text)
    port = h.free_port_pair()
    h.libcoap_server(env, 'notls', port, None)
    term = h.terminator(env, keys, '%s:%d' % (h.LO, port))
    uri = 'coaps://%s/' % term.addr
    rc, via, _ = h.coap_client(env, 'gnutls', uri, 'meter-0001', text, name='text-key')
    eq(rc, 0, 'coap-client-gnutls -k TEXT exit code')
    if not via.startswith('This is a test server'):
        raise h.Fail('coap-client-gnutls -k TEXT got %r' % via)
    for form in (keys['meter-0001'].hex(), '0x' + keys['meter-0001'].hex()):
        rc, via, _ = h.coap_client(env, 'gnutls', uri, 'meter-0001', form, timeout_s=3, name='hex-key')
        eq(via, '', 'payload with -k %s' % form[:6])


def test_metrics_are_the_stats_in_prometheus_text_format(env):
    h.psktund()
    keys = {'meter-0001': os.urandom(16)}
    m = env.meter(name='meter-0001')
    echo = env.echo(prefix=b'E:')
    term = h.terminator(env, keys, echo.addr)
    gw = h.gateway(env, keys, [('meter-0001', m.source)], term.addr)
    eq(m.request(b'x', gw.addr), b'E:x', 'echo')
    rc, out, _ = ctl('-s', gw.control, 'metrics')
    eq(rc, 0, 'exit code')
    st = gw.stats()
    lines = out.splitlines()
    # handshake_failures.REASON=N: one family, labelled by reason
    reasons = [k.split('.', 1)[1] for k in st if k.startswith('handshake_failures.')]
    eq(sorted(reasons), sorted(['unknown_identity', 'wrong_key', 'silent', 'no_answer',
                                'too_many_handshakes', 'no_cipher_suite', 'peer_alert', 'resolve',
                                'error']), 'handshake failure reasons in stats')
    i = lines.index('# TYPE psktun_handshake_failures_total counter')
    eq(lines[i + 1:i + 1 + len(reasons)],
       ['psktun_handshake_failures_total{reason="%s"} %d' % (r, st['handshake_failures.' + r])
        for r in reasons], 'the handshake_failures family')
    del lines[i:i + 1 + len(reasons)]
    for r in reasons:
        del st['handshake_failures.' + r]
    for k, v in st.items():
        gauge = k in ('sessions', 'handshaking', 'resumable', 'resumable_bytes', 'queued_bytes', 'io_uring')
        name = 'psktun_' + k + ('' if gauge else '_total')
        want = ['# TYPE %s %s' % (name, 'gauge' if gauge else 'counter'), '%s %d' % (name, v)]
        i = lines.index(want[0]) if want[0] in lines else -1
        if i < 0 or lines[i + 1].split()[0] != name:
            raise h.Fail('no %r in metrics' % want[0])
        if k not in ('plain_in', 'plain_out', 'records_in', 'records_out'):   # may move on
            eq(lines[i + 1], want[1], name)
    eq(len(lines), 2 * len(st), 'two lines a counter')


def test_silent_control_clients_are_dropped_and_psktunctl_gets_through(env):
    h.psktund()
    term = h.terminator(env, {'meter-0001': os.urandom(16)}, '127.0.0.1:%d' % h.free_udp_port())
    silent = []
    for _ in range(16):   # every slot the daemon allows, none sending a command
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(term.control)
        env.defer(s.close)
        silent.append(s)
    for cmd in ('metrics', 'stats', 'sessions'):
        rc, out, err = ctl('-s', term.control, cmd)
        eq((rc, out, err), (1, '', 'psktunctl: busy: 16 control clients are connected; try again\n'),
           'psktunctl %s exit code, stdout, stderr while 16 silent clients hold the socket' % cmd)
    t0 = time.monotonic()
    for s in silent:      # the daemon hangs up on each (EOF) after its timeout
        s.settimeout(h.T)
        eq(s.recv(1), b'', 'a silent client\'s connection is closed')
    waited = time.monotonic() - t0
    rc, out, _ = ctl('-s', term.control, 'stats')
    eq(rc, 0, 'psktunctl exit code after the silent clients were dropped')
    if 'sessions=0' not in out.splitlines():
        raise h.Fail('stats printed %r' % out)
    print('16 silent control clients dropped after %.1f s' % waited, flush=True)


def test_misuse_prints_the_usage_and_exits_2(env):
    h.psktund()
    for args in ((), ('frobnicate',), ('genkey',), ('stats', 'extra')):
        rc, out, err = ctl(*args)
        eq(rc, 2, 'exit code for %r' % (args,))
        if 'usage: psktunctl' not in err:
            raise h.Fail('no usage for %r: %r' % (args, err))


if __name__ == '__main__':
    h.main(globals())

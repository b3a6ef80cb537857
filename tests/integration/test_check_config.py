#!/usr/bin/env python3
"""psktund -n: a good configuration prints "configuration OK" and exits 0;
each kind of problem is reported as FILE:LINE: message with exit code 1,
and nothing is bound or started.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEY = bytes(range(16))


def _files(env, text, keys=None, key_mode=0o600):
    h.write_keys(env.path('keys.psk'), keys or {'meter-0001': KEY}, key_mode)
    return env.write('psktun.conf', text)


def _gateway_text(extra='', meters=(('meter-0001', '127.0.0.1:40001'),), accept='127.0.0.1:40000'):
    return h.config_text('gateway', tunnels=[dict(name='t1', accept=accept, connect='127.0.0.1:40002')],
                         meters=meters, extra=extra)


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError('%r not in config' % needle)


def _expect_error(conf, line, what, path=None):
    rc, out, err = h.check_config(conf)
    eq(rc, 1, 'psktund -n exit code (%s)' % what)
    both = out + err
    if 'configuration OK' in both:
        raise Fail('"configuration OK" printed for %s' % what)
    where = '%s:%d:' % (path or conf, line)
    if where not in both:
        raise Fail('%s: want a message starting %r, got:\n%s' % (what, where, both))
    return both


def test_good_gateway_config_is_ok(env):
    h.psktund()
    # -n binds nothing: the accept port may be taken
    s = env.udp()
    conf = _files(env, _gateway_text(accept='127.0.0.1:%d' % s.getsockname()[1]))
    rc, out, err = h.check_config(conf)
    eq(rc, 0, 'exit code')
    eq(out.strip(), 'configuration OK', 'stdout')


def test_good_terminator_config_with_dtls_block_is_ok(env):
    h.psktund()
    conf = _files(env, h.config_text(
        'terminator', control=env.path('ctl'),
        tunnels=[dict(name='a', accept='127.0.0.1:40010', connect='127.0.0.1:40011'),
                 dict(name='b', accept='[::1]:40012', connect='localhost:40013')],
        dtls=dict(priority=h.PRIO, mtu=1280, retransmit_ms=500, handshake_timeout_s=30,
                  idle_timeout_s=60, max_sessions=100)))
    rc, out, err = h.check_config(conf)
    eq((rc, out.strip()), (0, 'configuration OK'), 'exit code and stdout')


def test_unknown_setting_reported_with_line(env):
    h.psktund()
    text = _gateway_text(extra='dtls = {\n  mtu = 1280;\n  colour = "blue";\n};')
    conf = _files(env, text)
    _expect_error(conf, _line_of(text, 'colour'), 'unknown setting dtls.colour')


def test_unknown_top_level_setting_reported_with_line(env):
    h.psktund()
    text = _gateway_text(extra='verbosity = 3;')
    conf = _files(env, text)
    _expect_error(conf, _line_of(text, 'verbosity'), 'unknown setting verbosity')


def test_wrong_type_reported_with_line(env):
    h.psktund()
    text = _gateway_text(extra='dtls = {\n  retransmit_ms = "fast";\n};')
    conf = _files(env, text)
    _expect_error(conf, _line_of(text, 'retransmit_ms'), 'string for a number')


def test_syntax_error_reported_with_line(env):
    h.psktund()
    text = 'mode = "gateway";\nkeys = "keys.psk";\ntunnels = ( { name = "t1" accept = } );\n'
    conf = _files(env, text)
    _expect_error(conf, 3, 'syntax error')


def test_bad_address_reported_with_line(env):
    h.psktund()
    text = h.config_text('terminator', tunnels=[
        dict(name='t1', accept='127.0.0.1:40000', connect='127.0.0.1:40001'),
        dict(name='t2', accept='127.0.0.1', connect='127.0.0.1:40003')])
    conf = _files(env, text)
    _expect_error(conf, _line_of(text, '"t2"'), 'accept without a port')


def test_duplicate_tunnel_name_reported_with_line(env):
    h.psktund()
    text = h.config_text('terminator', tunnels=[
        dict(name='same', accept='127.0.0.1:40000', connect='127.0.0.1:40001'),
        dict(name='same', accept='127.0.0.1:40002', connect='127.0.0.1:40003')])
    conf = _files(env, text)
    _expect_error(conf, text.splitlines().index(
        [ln for ln in text.splitlines() if '"same"' in ln][1]) + 1, 'duplicate tunnel name')


def test_meter_identity_missing_from_key_file_reported_at_meter(env):
    h.psktund()
    text = _gateway_text(meters=(('meter-0001', '127.0.0.1:40001'), ('meter-0404', '127.0.0.1:40004')))
    conf = _files(env, text)
    _expect_error(conf, _line_of(text, 'meter-0404'), 'identity not in the key file')


def test_meters_in_terminator_mode_reported(env):
    h.psktund()
    text = h.config_text('terminator', tunnels=[
        dict(name='t1', accept='127.0.0.1:40000', connect='127.0.0.1:40001')],
        meters=[('meter-0001', '127.0.0.1:40005')])
    conf = _files(env, text)
    rc, out, err = h.check_config(conf)
    eq(rc, 1, 'exit code')
    if not re.search(re.escape(conf) + r':\d+:', out + err):
        raise Fail('no FILE:LINE message:\n%s' % (out + err))


def test_key_file_readable_by_others_refused(env):
    h.psktund()
    conf = _files(env, _gateway_text(), key_mode=0o644)
    rc, out, err = h.check_config(conf)
    eq(rc, 1, 'exit code')
    both = out + err
    if 'keys.psk' not in both or 'configuration OK' in both:
        raise Fail('want a message naming keys.psk, got:\n%s' % both)
    if KEY.hex() in both:
        raise Fail('the key was printed')


def test_group_readable_key_file_accepted(env):
    h.psktund()
    conf = _files(env, _gateway_text(), key_mode=0o640)
    rc, out, err = h.check_config(conf)
    eq((rc, out.strip()), (0, 'configuration OK'), 'exit code and stdout')


def test_short_key_reported_with_key_file_line(env):
    h.psktund()
    keyfile = env.path('keys.psk')
    conf = _files(env, _gateway_text())
    with open(keyfile, 'w') as f:
        f.write('# comment\n\nmeter-0001:%s\nmeter-0002:%s\n' % (KEY.hex(), KEY[:8].hex()))
    os.chmod(keyfile, 0o600)
    both = _expect_error(conf, 4, 'a 8-byte key', path=keyfile)
    if KEY[:8].hex() in both:
        raise Fail('the short key was printed')


def test_missing_key_file_reported(env):
    h.psktund()
    conf = env.write('psktun.conf', _gateway_text())
    rc, out, err = h.check_config(conf)
    eq(rc, 1, 'exit code')
    if 'keys.psk' not in out + err:
        raise Fail('want a message naming keys.psk, got:\n%s' % (out + err))


def test_missing_config_file_reported(env):
    h.psktund()
    rc, out, err = h.check_config(env.path('nope.conf'))
    eq(rc, 1, 'exit code')
    if 'nope.conf' not in out + err:
        raise Fail('want a message naming nope.conf, got:\n%s' % (out + err))


if __name__ == '__main__':
    h.main(globals())

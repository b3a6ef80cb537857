#!/usr/bin/env python3
"""psktund -n for state_file and session_cache: a good fleet configuration is
"configuration OK"; each problem is FILE:LINE: message, exit 1; the cache key
file is checked like the key file (0600, 64 hex digits) and never printed.
A psktund built without hiredis refuses session_cache.redis and says why.
Exit 0: all passed, 1: a test failed, 77: psktund missing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import eq, Fail  # noqa: E402

KEY = bytes(range(16))
CACHE_KEY = bytes(range(100, 132))
NO_REDIS = "'redis': psktun was built without Redis"


def _files(env, text, cache_key=CACHE_KEY.hex(), cache_mode=0o600):
    h.write_keys(env.path('keys.psk'), {'meter-0001': KEY}, 0o600)
    if cache_key is not None:
        env.write('cache.key', cache_key + '\n', cache_mode)
    return env.write('psktun.conf', text)


def _text(mode='terminator', extra=''):
    meters = [('meter-0001', '127.0.0.1:40001')] if mode == 'gateway' else ()
    return h.config_text(mode, tunnels=[dict(name='t1', accept='127.0.0.1:40000', connect='127.0.0.1:40002')],
                         meters=meters, extra=extra)


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError('%r not in config' % needle)


def _check(conf):
    rc, out, err = h.check_config(conf)
    return rc, out + err


def _expect(conf, where, message):
    rc, both = _check(conf)
    eq(rc, 1, 'psktund -n exit code')
    want = '%s: %s' % (where, message)
    if want not in both:
        raise Fail('want %r, got:\n%s' % (want, both))
    if 'configuration OK' in both or CACHE_KEY.hex() in both:
        raise Fail('"configuration OK" or the cache key printed:\n%s' % both)


def _built_with_redis(env):
    conf = _files(env, _text(extra='session_cache = { redis = "redis://127.0.0.1:6379/0"; '
                                   'key_file = "cache.key"; };'))
    rc, both = _check(conf)
    if NO_REDIS in both:
        return False
    eq((rc, both.strip()), (0, 'configuration OK'), 'exit code and output for a good session_cache')
    return True


def test_good_fleet_configuration_is_ok(env):
    h.psktund()
    with_redis = _built_with_redis(env)
    h.log('built with Redis: %s' % with_redis)
    for mode in ('gateway', 'terminator'):
        conf = _files(env, _text(mode, 'state_file = "state";'))
        eq(_check(conf), (0, 'configuration OK\n'), '%s with state_file' % mode)
    conf = _files(env, _text(extra='state_file = "/var/lib/psktun/state";\n'
                                   'session_cache = { key_file = "cache.key"; };'))
    eq(_check(conf), (0, 'configuration OK\n'), 'terminator with state_file and a cache key alone')


def test_without_hiredis_redis_is_refused_with_the_reason(env):
    h.psktund()
    if _built_with_redis(env):
        raise h.Skip('psktund is built with hiredis')
    text = _text(extra='session_cache = {\n  redis = "redis://127.0.0.1:6379/0";\n  key_file = "cache.key";\n};')
    conf = _files(env, text)
    _expect(conf, '%s:%d' % (conf, _line_of(text, 'redis =')), NO_REDIS)


def test_session_cache_problems_are_reported_with_file_and_line(env):
    h.psktund()
    if not _built_with_redis(env):
        raise h.Skip('psktund is built without hiredis')
    cases = [
        ('session_cache = {\n  redis = "redis://127.0.0.1:6379/0";\n};', 'redis =',
         "'redis' needs 'key_file' in 'session_cache': what Redis holds is sealed with that key"),
        ('session_cache = {\n  redis = "http://127.0.0.1:6379";\n  key_file = "cache.key";\n};', 'redis =',
         "'redis' must be redis://HOST[:PORT][/DB], not \"http://127.0.0.1:6379\""),
        ('session_cache = {\n  redis = "redis://127.0.0.1:99999/0";\n  key_file = "cache.key";\n};', 'redis =',
         "'redis' must be redis://HOST[:PORT][/DB], not \"redis://127.0.0.1:99999/0\""),
        ('session_cache = {\n  redis = "redis://127.0.0.1/x";\n  key_file = "cache.key";\n};', 'redis =',
         "'redis' must be redis://HOST[:PORT][/DB], not \"redis://127.0.0.1/x\""),
        ('session_cache = {\n  key_file = "cache.key";\n  ttl = 5;\n};', 'ttl =',
         "unknown setting 'ttl' in 'session_cache'"),
        ('session_cache = "redis://127.0.0.1";', 'session_cache =', "'session_cache' must be a group"),
        ('state_file = 5;', 'state_file =', "'state_file' must be a string"),
    ]
    for extra, needle, message in cases:
        text = _text(extra=extra)
        conf = _files(env, text)
        _expect(conf, '%s:%d' % (conf, _line_of(text, needle)), message)
    text = _text('gateway', extra='session_cache = {\n  key_file = "cache.key";\n};')
    conf = _files(env, text)
    _expect(conf, '%s:%d' % (conf, _line_of(text, 'session_cache =')),
            "'session_cache' is for terminators")


def test_cache_key_file_is_checked_like_the_key_file(env):
    h.psktund()
    text = _text(extra='session_cache = { key_file = "cache.key"; };')
    ck = env.path('cache.key')
    _expect(_files(env, text, cache_mode=0o644), ck,
            'cache key file is group-writable or open to others (mode 0644); run chmod 600 %s' % ck)
    _expect(_files(env, text, cache_key=CACHE_KEY.hex()[:-2]), ck,
            'the cache key must be 32 bytes as 64 hex digits')
    os.unlink(ck)
    _expect(_files(env, text, cache_key=None), ck, 'cannot open the cache key file: No such file or directory')


if __name__ == '__main__':
    h.main(globals())

/* servercache: the terminator's local session cache for session-ID resumption, one for the process. */
#include <errno.h>
#include <string.h>
#include <gnutls/gnutls.h>
#include <uv.h>
#include "daemon.h"
#include "keys.h"
#include "resume.h"
#include "servercache.h"

/*
 * The terminator's session cache (session-ID resumption, GnuTLS's db
 * callbacks), one for the process: a resuming gateway shakes hands from a
 * fresh port, which the kernel may give to another worker. Keyed by random
 * session IDs, so tunnels can share it too.
 */
static struct resume_store server_cache;
static uv_mutex_t server_cache_lock;
static uv_once_t server_cache_once = UV_ONCE_INIT;
static bool server_cache_ready;

static void server_cache_setup(void)
{
	uv_mutex_init(&server_cache_lock);
}

static struct resume_store *server_cache_lock_get(struct daemon *d)
{
	uv_once(&server_cache_once, server_cache_setup);
	uv_mutex_lock(&server_cache_lock);
	if (!server_cache_ready && resume_store_init(&server_cache, d->cfg->dtls.max_sessions) == 0)
		server_cache_ready = true;
	return server_cache_ready ? &server_cache : NULL;
}

void dtls_server_cache_stats(uint64_t *n, uint64_t *bytes)
{
	uv_once(&server_cache_once, server_cache_setup);
	uv_mutex_lock(&server_cache_lock);
	*n = server_cache_ready ? server_cache.n : 0;
	*bytes = server_cache_ready ? server_cache.bytes : 0;
	uv_mutex_unlock(&server_cache_lock);
}

/* Does the cache hold a still valid session with this ID? */
bool dtls_server_cache_has(struct daemon *d, const uint8_t *id, size_t len)
{
	struct resume_store *rs = server_cache_lock_get(d);
	bool has = rs && resume_get(rs, id, len, d->keys, daemon_now_ms(d) / 1000);

	uv_mutex_unlock(&server_cache_lock);
	return has;
}

/* Each entry, least recently used first (the state file's order). */
void dtls_server_cache_foreach(struct daemon *d, void (*fn)(void *arg, const struct resume_view *v), void *arg)
{
	struct resume_store *rs = server_cache_lock_get(d);

	if (rs)
		resume_foreach(rs, fn, arg);
	uv_mutex_unlock(&server_cache_lock);
}

/* fn(arg, entry) under the cache's lock if the cache holds a live entry for id. */
bool dtls_server_cache_with(struct daemon *d, const uint8_t *id, size_t len,
			    void (*fn)(void *arg, const struct resume_view *v), void *arg)
{
	struct resume_store *rs = server_cache_lock_get(d);
	struct resume_view v;
	bool found = rs && resume_peek(rs, id, len, daemon_now_ms(d) / 1000, &v);

	if (found)
		fn(arg, &v);
	uv_mutex_unlock(&server_cache_lock);
	return found;
}

int dtls_server_cache_put(struct daemon *d, const struct resume_view *v)
{
	struct resume_store *rs = server_cache_lock_get(d);
	int r = rs ? resume_put_view(rs, v) : -ENOMEM;

	uv_mutex_unlock(&server_cache_lock);
	return r;
}

void dtls_server_cache_deinit(void)
{
	uv_once(&server_cache_once, server_cache_setup);
	uv_mutex_lock(&server_cache_lock);
	if (server_cache_ready)
		resume_store_deinit(&server_cache);
	server_cache_ready = false;
	uv_mutex_unlock(&server_cache_lock);
}

int dtls_server_cache_store(struct daemon *d, const gnutls_datum_t *key, const gnutls_datum_t *data,
			    const char *identity, size_t len, const uint8_t digest[32])
{
	struct resume_store *rs = server_cache_lock_get(d);
	int r = rs ? resume_put(rs, key->data, key->size, data, identity, len, digest,
				daemon_now_ms(d) / 1000) : -ENOMEM;

	uv_mutex_unlock(&server_cache_lock);
	return r;
}

gnutls_datum_t dtls_server_cache_fetch(struct daemon *d, const gnutls_datum_t *key)
{
	struct resume_store *rs = server_cache_lock_get(d);
	const gnutls_datum_t *e = rs ? resume_get(rs, key->data, key->size, d->keys,
						  daemon_now_ms(d) / 1000) : NULL;
	gnutls_datum_t out = { NULL, 0 };

	if (e) {
		out.data = gnutls_malloc(e->size);
		if (out.data) {
			memcpy(out.data, e->data, e->size);
			out.size = e->size;
		}
	}
	uv_mutex_unlock(&server_cache_lock);
	return out;
}

void dtls_server_cache_del(struct daemon *d, const gnutls_datum_t *key)
{
	struct resume_store *rs = server_cache_lock_get(d);

	if (rs)
		resume_del(rs, key->data, key->size);
	uv_mutex_unlock(&server_cache_lock);
}

/* servercache: the terminator's session cache (session-ID resumption), one for the process, shared by workers. */
#ifndef PSKTUN_SERVERCACHE_H
#define PSKTUN_SERVERCACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include "resume.h"

struct daemon;

void dtls_server_cache_stats(uint64_t *n, uint64_t *bytes);
void dtls_server_cache_deinit(void);
void dtls_server_cache_foreach(struct daemon *d, void (*fn)(void *arg, const struct resume_view *v), void *arg);
int dtls_server_cache_put(struct daemon *d, const struct resume_view *v);
bool dtls_server_cache_with(struct daemon *d, const uint8_t *id, size_t len,
			    void (*fn)(void *arg, const struct resume_view *v), void *arg);
bool dtls_server_cache_has(struct daemon *d, const uint8_t *id, size_t len);
/* GnuTLS's db callbacks' side (terminator.c): a session's resumption data
 * under its ID; a copy of it (gnutls_malloc'd; size 0: none), or removed. */
int dtls_server_cache_store(struct daemon *d, const gnutls_datum_t *key, const gnutls_datum_t *data,
			    const char *identity, size_t len, const uint8_t digest[32]);
gnutls_datum_t dtls_server_cache_fetch(struct daemon *d, const gnutls_datum_t *key);
void dtls_server_cache_del(struct daemon *d, const gnutls_datum_t *key);
#endif

/* cache: the shared session cache in Redis (terminator, session_cache.redis). */
#ifndef PSKTUN_CACHE_H
#define PSKTUN_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>

struct daemon;
struct tunnel;

int shared_cache_start(struct daemon *d);
void shared_cache_stop(struct daemon *d);
void shared_cache_store(struct daemon *d, const gnutls_datum_t *sid, const gnutls_datum_t *data,
			const char *identity, size_t id_len, const uint8_t digest[32]);
void shared_cache_remove(struct daemon *d, const gnutls_datum_t *sid);
/* `show`'s "cache" record: the state, and the counters summed over the workers (sum). */
struct text;
struct psktun_stats;
void shared_cache_show(struct daemon *d, const struct psktun_stats *sum, unsigned up, unsigned n,
		       struct text *t);
/* True: the ClientHello, which names a session the local cache lacks, is held
 * while Redis is asked; it comes back through terminator_client_hello. */
bool shared_cache_hold(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len);
/* What the cache's user (terminator.c) provides: a held ClientHello, handed back when Redis answered. */
void terminator_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len);

#endif

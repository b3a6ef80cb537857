/* resume: DTLS 1.2 session-ID resumption: the terminator's bounded cache, the gateway's per-meter data. */
#ifndef PSKTUN_RESUME_H
#define PSKTUN_RESUME_H
#include <stdint.h>
#include <gnutls/gnutls.h>
#include "htab.h"
#include "keys.h"

#define PSKTUN_RESUME_LIFETIME_S 86400	/* meters that report daily still resume */
#include <stdbool.h>

struct resume_entry;

/*
 * A bounded store of resumption data, least recently used out first.
 * Terminator: keyed by session ID, filled by GnuTLS's db callbacks.
 * Gateway: keyed by meter identity, filled when a session comes up.
 * Every entry remembers the identity and a digest of its key: when the
 * key changes or goes (reload), the entry is useless and is dropped on use.
 */
struct resume_store {
	struct htab index;
	struct resume_entry *lru_head, *lru_tail;	/* head: most recent */
	unsigned n, max;
	uint64_t bytes;		/* held in entries, headers included */
	gnutls_datum_t view;	/* what resume_get() returns */
};

int resume_store_init(struct resume_store *rs, unsigned max);
void resume_store_deinit(struct resume_store *rs);

/* Copies key, data and identity; replaces an entry with the same key. */
int resume_put(struct resume_store *rs, const void *key, size_t key_len, const gnutls_datum_t *data,
	       const char *identity, size_t id_len, const uint8_t digest[32], uint64_t now_s);
/* Resumption data if present, not expired and its identity's key unchanged in `keys`;
 * the datum points into the store (valid until the next call). */
const gnutls_datum_t *resume_get(struct resume_store *rs, const void *key, size_t key_len,
				 const struct psktun_keys *keys, uint64_t now_s);
void resume_del(struct resume_store *rs, const void *key, size_t key_len);

/* An entry as it is stored: what a state file saves and restores (state.c). */
#define PSKTUN_RESUME_DIGEST_LEN 16
struct resume_view {
	const uint8_t *key;
	size_t key_len;
	const char *identity;
	size_t identity_len;
	const uint8_t *digest;		/* PSKTUN_RESUME_DIGEST_LEN bytes of SHA-256(PSK) */
	const uint8_t *data;
	size_t data_len;
	uint64_t expires_s;		/* loop clock seconds, like now_s */
};

/* The entry for key if it has not expired, without touching the LRU order;
 * v points into the store until it changes. */
bool resume_peek(struct resume_store *rs, const void *key, size_t key_len, uint64_t now_s, struct resume_view *v);
/* Copies v in, as resume_put does, with its own digest and expiry. */
int resume_put_view(struct resume_store *rs, const struct resume_view *v);
/* Each entry, least recently used first (put back in this order, the LRU order
 * is the same); fn must not change the store. */
void resume_foreach(struct resume_store *rs, void (*fn)(void *arg, const struct resume_view *v), void *arg);
#endif

/* resume: DTLS 1.2 session-ID resumption: the terminator's bounded cache, the gateway's per-meter data. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gnutls/crypto.h>
#include "resume.h"

#define RESUME_KEY_MAX 128

/* One allocation an entry: the header, then key, identity and resumption data.
 * A gateway keys by identity, so there the key is the identity (stored once). */
struct resume_entry {
	struct htab_node node;
	struct resume_entry *prev, *next;	/* LRU */
	uint32_t expires_s;			/* seconds of the loop clock */
	uint8_t key_len, identity_len;		/* identity_len 0: the key is the identity */
	uint16_t data_len;
	uint8_t digest[16];			/* first half of SHA-256(key): enough to see a change */
	uint8_t bytes[];			/* key, identity, data */
};

static const uint8_t *entry_key(const struct resume_entry *e) { return e->bytes; }
static const char *entry_identity(const struct resume_entry *e)
{
	return (const char *)e->bytes + (e->identity_len ? e->key_len : 0);
}
static size_t entry_identity_len(const struct resume_entry *e)
{
	return e->identity_len ? e->identity_len : e->key_len;
}
static uint8_t *entry_data(struct resume_entry *e) { return e->bytes + e->key_len + e->identity_len; }
static size_t entry_size(const struct resume_entry *e)
{
	return sizeof(*e) + e->key_len + e->identity_len + e->data_len;
}

int resume_store_init(struct resume_store *rs, unsigned max)
{
	memset(rs, 0, sizeof(*rs));
	rs->max = max;
	return htab_init(&rs->index, max < 1024 ? max : 1024);
}

static void lru_unlink(struct resume_store *rs, struct resume_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		rs->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		rs->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct resume_store *rs, struct resume_entry *e)
{
	e->prev = NULL;
	e->next = rs->lru_head;
	if (rs->lru_head)
		rs->lru_head->prev = e;
	rs->lru_head = e;
	if (!rs->lru_tail)
		rs->lru_tail = e;
}

static void entry_free(struct resume_store *rs, struct resume_entry *e)
{
	lru_unlink(rs, e);
	htab_remove(&rs->index, &e->node);
	rs->n--;
	rs->bytes -= entry_size(e);
	gnutls_memset(e, 0, entry_size(e));	/* the data holds a master secret */
	free(e);
}

void resume_store_deinit(struct resume_store *rs)
{
	while (rs->lru_head)
		entry_free(rs, rs->lru_head);
	htab_deinit(&rs->index);
}

static struct resume_entry *find(struct resume_store *rs, const void *key, size_t len)
{
	uint64_t h = psktun_hash(key, len);

	for (struct htab_node *n = htab_first(&rs->index, h); n; n = htab_next(n, h)) {
		struct resume_entry *e = container_of(n, struct resume_entry, node);

		if (e->key_len == len && !memcmp(entry_key(e), key, len))
			return e;
	}
	return NULL;
}

/* One entry in, replacing one with the same key; the least recently used out when full. */
static int put(struct resume_store *rs, const struct resume_view *v)
{
	bool same = v->key_len == v->identity_len && !memcmp(v->key, v->identity, v->identity_len);
	struct resume_entry *e;

	if (!rs->max || v->key_len > RESUME_KEY_MAX || v->identity_len > PSKTUN_IDENTITY_MAX ||
	    !v->data_len || v->data_len > UINT16_MAX)
		return -EINVAL;
	e = find(rs, v->key, v->key_len);
	if (e)
		entry_free(rs, e);
	while (rs->n >= rs->max)
		entry_free(rs, rs->lru_tail);
	e = calloc(1, sizeof(*e) + v->key_len + (same ? 0 : v->identity_len) + v->data_len);
	if (!e)
		return -ENOMEM;
	e->key_len = v->key_len;
	e->identity_len = same ? 0 : v->identity_len;
	e->data_len = v->data_len;
	memcpy(e->bytes, v->key, v->key_len);
	if (!same)
		memcpy(e->bytes + v->key_len, v->identity, v->identity_len);
	memcpy(entry_data(e), v->data, v->data_len);
	memcpy(e->digest, v->digest, sizeof(e->digest));
	e->expires_s = v->expires_s;
	htab_insert(&rs->index, &e->node, psktun_hash(v->key, v->key_len));
	lru_push(rs, e);
	rs->n++;
	rs->bytes += entry_size(e);
	return 0;
}

int resume_put(struct resume_store *rs, const void *key, size_t key_len, const gnutls_datum_t *data,
	       const char *identity, size_t id_len, const uint8_t digest[32], uint64_t now_s)
{
	struct resume_view v = {
		.key = key, .key_len = key_len, .identity = identity, .identity_len = id_len,
		.digest = digest, .data = data->data, .data_len = data->size,
		.expires_s = now_s + PSKTUN_RESUME_LIFETIME_S,
	};

	return put(rs, &v);
}

int resume_put_view(struct resume_store *rs, const struct resume_view *v)
{
	return put(rs, v);
}

bool resume_peek(struct resume_store *rs, const void *key, size_t key_len, uint64_t now_s, struct resume_view *v)
{
	struct resume_entry *e = find(rs, key, key_len);

	if (!e || now_s >= e->expires_s)
		return false;
	*v = (struct resume_view){
		.key = entry_key(e), .key_len = e->key_len,
		.identity = entry_identity(e), .identity_len = entry_identity_len(e),
		.digest = e->digest, .data = entry_data(e), .data_len = e->data_len,
		.expires_s = e->expires_s,
	};
	return true;
}

void resume_foreach(struct resume_store *rs, void (*fn)(void *arg, const struct resume_view *v), void *arg)
{
	for (struct resume_entry *e = rs->lru_tail; e; e = e->prev) {
		struct resume_view v = {
			.key = entry_key(e), .key_len = e->key_len,
			.identity = entry_identity(e), .identity_len = entry_identity_len(e),
			.digest = e->digest, .data = entry_data(e), .data_len = e->data_len,
			.expires_s = e->expires_s,
		};

		fn(arg, &v);
	}
}

const gnutls_datum_t *resume_get(struct resume_store *rs, const void *key, size_t key_len,
				 const struct psktun_keys *keys, uint64_t now_s)
{
	struct resume_entry *e = find(rs, key, key_len);
	const struct psktun_key *k;
	uint8_t digest[32];

	if (!e)
		return NULL;
	k = psktun_keys_find(keys, entry_identity(e), entry_identity_len(e));
	if (k)
		gnutls_hash_fast(GNUTLS_DIG_SHA256, k->key, k->key_len, digest);
	if (!k || memcmp(digest, e->digest, sizeof(e->digest)) || now_s >= e->expires_s) {
		entry_free(rs, e);
		return NULL;
	}
	lru_unlink(rs, e);
	lru_push(rs, e);
	rs->view.data = entry_data(e);
	rs->view.size = e->data_len;
	return &rs->view;
}

void resume_del(struct resume_store *rs, const void *key, size_t key_len)
{
	struct resume_entry *e = find(rs, key, key_len);

	if (e)
		entry_free(rs, e);
}

/* resume: DTLS 1.2 session-ID resumption: the terminator's bounded cache, the gateway's per-meter data. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gnutls/crypto.h>
#include "resume.h"

#define RESUME_KEY_MAX 128

struct resume_entry {
	struct htab_node node;
	struct resume_entry *prev, *next;	/* LRU */
	uint8_t key[RESUME_KEY_MAX];
	size_t key_len;
	char identity[PSKTUN_IDENTITY_MAX + 1];
	size_t identity_len;
	uint8_t digest[32];
	uint64_t expires_s;
	gnutls_datum_t data;
};

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
	rs->bytes -= e->data.size;
	gnutls_memset(e->data.data, 0, e->data.size);	/* holds a master secret */
	free(e->data.data);
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

		if (e->key_len == len && !memcmp(e->key, key, len))
			return e;
	}
	return NULL;
}

int resume_put(struct resume_store *rs, const void *key, size_t key_len, const gnutls_datum_t *data,
	       const char *identity, size_t id_len, const uint8_t digest[32], uint64_t now_s)
{
	struct resume_entry *e;

	if (!rs->max || key_len > RESUME_KEY_MAX || id_len > PSKTUN_IDENTITY_MAX || !data->size)
		return -EINVAL;
	e = find(rs, key, key_len);
	if (e)
		entry_free(rs, e);
	while (rs->n >= rs->max)
		entry_free(rs, rs->lru_tail);
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->data.data = malloc(data->size);
	if (!e->data.data) {
		free(e);
		return -ENOMEM;
	}
	memcpy(e->data.data, data->data, data->size);
	e->data.size = data->size;
	memcpy(e->key, key, key_len);
	e->key_len = key_len;
	memcpy(e->identity, identity, id_len);
	e->identity_len = id_len;
	memcpy(e->digest, digest, 32);
	e->expires_s = now_s + PSKTUN_RESUME_LIFETIME_S;
	htab_insert(&rs->index, &e->node, psktun_hash(key, key_len));
	lru_push(rs, e);
	rs->n++;
	rs->bytes += e->data.size;
	return 0;
}

const gnutls_datum_t *resume_get(struct resume_store *rs, const void *key, size_t key_len,
				 const struct psktun_keys *keys, uint64_t now_s)
{
	struct resume_entry *e = find(rs, key, key_len);
	const struct psktun_key *k;
	uint8_t digest[32];

	if (!e)
		return NULL;
	k = psktun_keys_find(keys, e->identity, e->identity_len);
	if (k)
		gnutls_hash_fast(GNUTLS_DIG_SHA256, k->key, k->key_len, digest);
	if (!k || memcmp(digest, e->digest, 32) || now_s >= e->expires_s) {
		entry_free(rs, e);
		return NULL;
	}
	lru_unlink(rs, e);
	lru_push(rs, e);
	return &e->data;
}

void resume_del(struct resume_store *rs, const void *key, size_t key_len)
{
	struct resume_entry *e = find(rs, key, key_len);

	if (e)
		entry_free(rs, e);
}

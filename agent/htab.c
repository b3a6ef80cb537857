/* htab: an intrusive, resizable hash table; the caller embeds nodes and compares keys. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "htab.h"

static uint64_t hash_seed = 0x9e3779b97f4a7c15ULL;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static uint64_t seed_given;

static void seed_set(void)
{
	hash_seed = seed_given | 1;
}

/* Takes effect once for the process, before any table is filled: workers
 * share the session cache, and a later seed would lose what it holds. */
void psktun_hash_seed(uint64_t seed)
{
	seed_given = seed;
	pthread_once(&seed_once, seed_set);
}

/* FNV-1a mixed with a secret seed and a final avalanche (splitmix64). */
uint64_t psktun_hash(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 0xcbf29ce484222325ULL ^ hash_seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h ^= hash_seed;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

int htab_init(struct htab *h, size_t buckets)
{
	size_t nb = 16;

	while (nb < buckets)
		nb <<= 1;
	h->bucket = calloc(nb, sizeof(*h->bucket));
	if (!h->bucket)
		return -ENOMEM;
	h->mask = nb - 1;
	h->n = 0;
	return 0;
}

void htab_deinit(struct htab *h)
{
	free(h->bucket);
	h->bucket = NULL;
	h->mask = 0;
	h->n = 0;
}

static void grow(struct htab *h)
{
	size_t nb = (h->mask + 1) * 2;
	struct htab_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i <= h->mask; i++) {
		struct htab_node *n = h->bucket[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(h->bucket);
	h->bucket = b;
	h->mask = nb - 1;
}

void htab_insert(struct htab *h, struct htab_node *node, uint64_t hash)
{
	if (h->n >= h->mask + 1)
		grow(h);
	node->hash = hash;
	node->next = h->bucket[hash & h->mask];
	h->bucket[hash & h->mask] = node;
	h->n++;
}

void htab_remove(struct htab *h, struct htab_node *node)
{
	struct htab_node **pp = &h->bucket[node->hash & h->mask];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == node) {
			*pp = node->next;
			node->next = NULL;
			h->n--;
			return;
		}
	}
}

struct htab_node *htab_first(const struct htab *h, uint64_t hash)
{
	struct htab_node *n = h->bucket[hash & h->mask];

	while (n && n->hash != hash)
		n = n->next;
	return n;
}

struct htab_node *htab_next(const struct htab_node *node, uint64_t hash)
{
	struct htab_node *n = node->next;

	while (n && n->hash != hash)
		n = n->next;
	return n;
}

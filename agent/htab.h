/* htab: an intrusive, resizable hash table; the caller embeds nodes and compares keys. */
#ifndef PSKTUN_HTAB_H
#define PSKTUN_HTAB_H
#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct htab_node {
	struct htab_node *next;
	uint64_t hash;
};

struct htab {
	struct htab_node **bucket;
	size_t mask;		/* buckets - 1 (a power of two) */
	size_t n;
};

int htab_init(struct htab *h, size_t buckets);
void htab_deinit(struct htab *h);
/* Never fails: when growing is impossible the table stays as it is, only slower. */
void htab_insert(struct htab *h, struct htab_node *node, uint64_t hash);
void htab_remove(struct htab *h, struct htab_node *node);
/* Walk the nodes whose hash equals `hash`: for (n = htab_first(h, x); n; n = htab_next(n, x)). */
struct htab_node *htab_first(const struct htab *h, uint64_t hash);
struct htab_node *htab_next(const struct htab_node *node, uint64_t hash);

/* Keyed hash of bytes; the key is random per process so peers cannot aim at one chain. */
uint64_t psktun_hash(const void *data, size_t len);
void psktun_hash_seed(uint64_t seed);
#endif

/* queue: the small bounded FIFOs of datagrams that wait while a session shakes hands. */
#ifndef PSKTUN_QUEUE_H
#define PSKTUN_QUEUE_H
#include <stddef.h>
#include <stdint.h>

struct dgram {
	struct dgram *next;
	size_t len;
	uint64_t at_ms;		/* when it was pushed, if the owner says (session.c: sent) */
	uint8_t data[];
};

/* The bytes all queues of one event loop hold together, and their ceiling. */
struct dgram_budget {
	size_t used;
	size_t max;
};

struct dgram_queue {
	struct dgram *head, *tail;
	unsigned n;
	unsigned max;		/* datagrams held at most */
	struct dgram_budget *budget;	/* shared, not owned; outlives the queue */
};

void dgram_queue_init(struct dgram_queue *q, unsigned max, struct dgram_budget *budget);
/* Copies the datagram. -ENOBUFS when the queue holds max datagrams or the
 * shared budget has no room for len more bytes (the caller counts
 * dropped_overflow), -ENOMEM. */
int dgram_queue_push(struct dgram_queue *q, const uint8_t *data, size_t len);
/* The oldest datagram, now owned by the caller (free()), or NULL. Its bytes
 * go back to the budget. */
struct dgram *dgram_queue_pop(struct dgram_queue *q);
/* Frees what is left; returns how many were dropped. */
unsigned dgram_queue_clear(struct dgram_queue *q);
#endif

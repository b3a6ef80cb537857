/* queue: the small bounded FIFO of datagrams that wait while a session shakes hands. */
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

struct dgram_queue {
	struct dgram *head, *tail;
	unsigned n;
	unsigned max;		/* datagrams held at most */
};

void dgram_queue_init(struct dgram_queue *q, unsigned max);
/* Copies the datagram. -ENOBUFS when full (the caller counts dropped_overflow), -ENOMEM. */
int dgram_queue_push(struct dgram_queue *q, const uint8_t *data, size_t len);
/* The oldest datagram, now owned by the caller (free()), or NULL. */
struct dgram *dgram_queue_pop(struct dgram_queue *q);
/* Frees what is left; returns how many were dropped. */
unsigned dgram_queue_clear(struct dgram_queue *q);
#endif

/* queue: the small bounded FIFOs of datagrams that wait while a session shakes hands. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "queue.h"

void dgram_queue_init(struct dgram_queue *q, unsigned max, struct dgram_budget *budget)
{
	q->head = q->tail = NULL;
	q->n = 0;
	q->max = max;
	q->budget = budget;
}

int dgram_queue_push(struct dgram_queue *q, const uint8_t *data, size_t len)
{
	struct dgram_budget *b = q->budget;
	struct dgram *d;

	if (q->n >= q->max || len > b->max - (b->used < b->max ? b->used : b->max))
		return -ENOBUFS;
	d = malloc(sizeof(*d) + len);
	if (!d)
		return -ENOMEM;
	d->next = NULL;
	d->len = len;
	d->at_ms = 0;
	memcpy(d->data, data, len);
	if (q->tail)
		q->tail->next = d;
	else
		q->head = d;
	q->tail = d;
	q->n++;
	b->used += len;
	return 0;
}

struct dgram *dgram_queue_pop(struct dgram_queue *q)
{
	struct dgram *d = q->head;

	if (!d)
		return NULL;
	q->head = d->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	q->budget->used -= d->len;
	d->next = NULL;
	return d;
}

unsigned dgram_queue_clear(struct dgram_queue *q)
{
	unsigned dropped = 0;
	struct dgram *d;

	while ((d = dgram_queue_pop(q))) {
		free(d);
		dropped++;
	}
	return dropped;
}

/* uringloop: the libuv handles that drive a ring: a turn after the loop's I/O phase, the ring's descriptor watched. */
#include "uringloop.h"

static void on_check(uv_check_t *h)
{
	struct uring_loop *l = h->data;

	l->turn(l->arg);
}

static void on_idle(uv_idle_t *h)
{
	struct uring_loop *l = h->data;

	l->turn(l->arg);
}

static void on_ring(uv_poll_t *p, int status, int events)
{
	struct uring_loop *l = p->data;

	l->ready(l->arg);
}

void uring_loop_init(struct uring_loop *l, uv_loop_t *loop, int ring_fd, void (*turn)(void *arg),
		     void (*ready)(void *arg), void *arg)
{
	l->turn = turn;
	l->ready = ready;
	l->arg = arg;
	uv_check_init(loop, &l->check);
	l->check.data = l;
	uv_idle_init(loop, &l->idle);
	l->idle.data = l;
	uv_poll_init(loop, &l->poll, ring_fd);
	l->poll.data = l;
	uv_poll_start(&l->poll, UV_READABLE, on_ring);
	uv_unref((uv_handle_t *)&l->poll);	/* it alone keeps no loop running */
}

void uring_loop_want(struct uring_loop *l)
{
	uv_check_start(&l->check, on_check);	/* no-ops when started */
	uv_idle_start(&l->idle, on_idle);
}

void uring_loop_rest(struct uring_loop *l)
{
	uv_check_stop(&l->check);
	uv_idle_stop(&l->idle);
}

static void on_check_closed(uv_handle_t *h)
{
	struct uring_loop *l = h->data;

	l->closed(l->arg);
}

/* One after the other: libuv runs close callbacks newest first. */
static void on_idle_closed(uv_handle_t *h)
{
	struct uring_loop *l = h->data;

	uv_close((uv_handle_t *)&l->check, on_check_closed);
}

static void on_poll_closed(uv_handle_t *h)
{
	struct uring_loop *l = h->data;

	uv_close((uv_handle_t *)&l->idle, on_idle_closed);
}

void uring_loop_close(struct uring_loop *l, void (*closed)(void *arg))
{
	l->closed = closed;
	uring_loop_rest(l);
	uv_close((uv_handle_t *)&l->poll, on_poll_closed);
}

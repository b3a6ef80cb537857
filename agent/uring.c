/* uring: a loop iteration's sends on session sockets, submitted together through io_uring. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "uring.h"

#ifndef HAVE_LIBURING

int uring_tx_new(uv_loop_t *loop, uint64_t *dropped_send, uint64_t *dropped_ring,
		 struct uring_tx **out, const char **why)
{
	*why = "built without liburing";
	return -ENOSYS;
}

int uring_tx_send(struct uring_tx *u, int fd, const void *data, size_t len)
{
	return -ENOSYS;
}

void uring_tx_flush(struct uring_tx *u)
{
}

void uring_tx_close(struct uring_tx *u)
{
}

#else
#include <liburing.h>
#include "uringloop.h"

struct uring_tx {
	struct uring_loop lp;	/* submits after the loop's I/O phase; the ring's descriptor */
	struct io_uring ring;
	unsigned in_flight;	/* slots taken: queued or submitted, not completed */
	uint64_t *dropped_send, *dropped_ring;
	unsigned free_top;
	uint16_t free_slot[URING_SLOTS];
	uint8_t slot[URING_SLOTS][URING_SLOT_BYTES];
};

static void reap(struct uring_tx *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe) {
		/* A send the kernel refused (ECONNREFUSED after an ICMP error,
		 * ENOBUFS): lost like a refused send(2), and counted the same. */
		if (cqe->res < 0)
			(*u->dropped_send)++;
		u->free_slot[u->free_top++] = (uint16_t)cqe->user_data;
		u->in_flight--;
		n++;
	}
	io_uring_cq_advance(&u->ring, n);
}

static void submit(void *arg)
{
	struct uring_tx *u = arg;
	int r;

	if (io_uring_sq_ready(&u->ring)) {
		do
			r = io_uring_submit(&u->ring);
		while (r == -EINTR);
		if (r == -EBUSY) {	/* completions to take first */
			reap(u);
			io_uring_submit(&u->ring);
		}
	}
	reap(u);
	if (!io_uring_sq_ready(&u->ring))
		uring_loop_rest(&u->lp);
}

static void on_ring(void *arg)
{
	reap(arg);
}

int uring_tx_new(uv_loop_t *loop, uint64_t *dropped_send, uint64_t *dropped_ring,
		 struct uring_tx **out, const char **why)
{
	const char *env = getenv("PSKTUN_IO_URING");
	struct uring_tx *u;
	int r;

	if (env && !strcmp(env, "0")) {
		*why = "PSKTUN_IO_URING=0";
		return -ENOTSUP;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		*why = "out of memory";
		return -ENOMEM;
	}
	/* Completions are reaped after every submission: twice the slots
	 * (liburing's default) never overflows. */
	r = io_uring_queue_init(URING_SLOTS, &u->ring, 0);
	if (r < 0) {
		free(u);
		*why = r == -ENOSYS ? "the kernel has no io_uring" :
		       r == -EPERM ? "the kernel refuses io_uring (kernel.io_uring_disabled, or a seccomp filter)" :
		       r == -ENOMEM ? "no memory for a ring (RLIMIT_MEMLOCK on kernels before 5.12)" :
				      "io_uring_queue_init failed";
		return r;
	}
	u->dropped_send = dropped_send;
	u->dropped_ring = dropped_ring;
	for (unsigned i = 0; i < URING_SLOTS; i++)
		u->free_slot[i] = (uint16_t)(URING_SLOTS - 1 - i);
	u->free_top = URING_SLOTS;
	uring_loop_init(&u->lp, loop, u->ring.ring_fd, submit, on_ring, u);
	*out = u;
	return 0;
}

int uring_tx_send(struct uring_tx *u, int fd, const void *data, size_t len)
{
	struct io_uring_sqe *sqe;
	unsigned i;

	if (len > URING_SLOT_BYTES)
		return -EMSGSIZE;
	/* Every slot taken, most by sends still queued (a burst: a loop
	 * iteration with more than URING_SLOTS datagrams): submitted now, they
	 * complete during the submission and give their slots back. */
	if (!u->free_top)
		submit(u);
	if (!u->free_top) {
		(*u->dropped_ring)++;
		return -ENOBUFS;
	}
	sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {		/* a free slot means a free entry: never, but bounded */
		(*u->dropped_ring)++;
		return -ENOBUFS;
	}
	i = u->free_slot[--u->free_top];
	memcpy(u->slot[i], data, len);
	io_uring_prep_send(sqe, fd, u->slot[i], len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, i);
	u->in_flight++;
	uring_loop_want(&u->lp);
	return 0;
}

void uring_tx_flush(struct uring_tx *u)
{
	if (u && io_uring_sq_ready(&u->ring))
		submit(u);
}

static void on_closed(void *arg)
{
	struct uring_tx *u = arg;

	io_uring_queue_exit(&u->ring);
	free(u);
}

void uring_tx_close(struct uring_tx *u)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
	struct io_uring_cqe *cqe;

	if (!u)
		return;
	submit(u);
	/* The last close_notify alerts: give them a moment to leave. */
	while (u->in_flight && io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0)
		reap(u);
	uring_loop_close(&u->lp, on_closed);
}
#endif

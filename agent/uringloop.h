/* uringloop: the libuv handles that drive a ring: a turn after the loop's I/O phase, the ring's descriptor watched. */
#ifndef PSKTUN_URINGLOOP_H
#define PSKTUN_URINGLOOP_H
#include <uv.h>

/*
 * A turn (submit what is queued, take what completed) runs in the check phase,
 * after the I/O callbacks queued their work, and in the idle phase for what a
 * timer, a signal or a turn itself queued: with an idle handle active the loop
 * does not wait in poll, where the check phase would come only after the next
 * event (see sendbatch.h). The ring's descriptor is readable when completions
 * wait that came later (ready). Neither keeps the loop running by itself.
 */
struct uring_loop {
	uv_check_t check;
	uv_idle_t idle;
	uv_poll_t poll;
	void (*turn)(void *arg);
	void (*ready)(void *arg);
	void (*closed)(void *arg);
	void *arg;
};

void uring_loop_init(struct uring_loop *l, uv_loop_t *loop, int ring_fd, void (*turn)(void *arg),
		     void (*ready)(void *arg), void *arg);
/* Work is queued: a turn soon (no-op when one is due). */
void uring_loop_want(struct uring_loop *l);
/* Nothing is queued: no more turns until uring_loop_want. */
void uring_loop_rest(struct uring_loop *l);
/* Stops and closes the handles; closed(arg) runs once the last is closed. */
void uring_loop_close(struct uring_loop *l, void (*closed)(void *arg));
#endif

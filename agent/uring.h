/* uring: a loop iteration's sends on session sockets, submitted together through io_uring. */
#ifndef PSKTUN_URING_H
#define PSKTUN_URING_H
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Each session has its own connected socket (a meter needs its own source
 * port), so its datagrams cannot share a sendmmsg: without a ring every one
 * costs a send(2). Here a send is copied into one of URING_SLOTS buffers and
 * queued as an IORING_OP_SEND; after the loop's I/O phase (a check handle,
 * and an idle one for what timers queued) one io_uring_enter submits them
 * all. UDP sends complete during the submission; the rare one that waits
 * (a full socket buffer) completes later, and the ring's descriptor, watched
 * by the loop, says so.
 *
 * Bounded: at most URING_SLOTS sends queued or in flight. When all are taken
 * those queued are submitted at once (they complete during the submission);
 * if all are still in flight (full socket buffers) a send is dropped and
 * counted (dropped_ring), never waited for. A datagram
 * larger than a slot is the caller's to send itself (-EMSGSIZE), after
 * uring_tx_flush() so that it does not overtake what is queued.
 *
 * Off (system calls, as without it) when built without liburing, when the
 * kernel refuses a ring (ENOSYS, EPERM: kernel.io_uring_disabled, seccomp)
 * or when the environment says PSKTUN_IO_URING=0.
 */
#define URING_SLOTS 256
#define URING_SLOT_BYTES 2048	/* dtls.mtu is at most 1500 (a flight, a record) */

struct uring_tx;

/* 0 and *out, or a negative errno with why (a sentence) set: use system calls. */
int uring_tx_new(uv_loop_t *loop, uint64_t *dropped_send, uint64_t *dropped_ring,
		 struct uring_tx **out, const char **why);
/* Queues one datagram on a connected socket: 0, -EMSGSIZE (send it yourself,
 * after uring_tx_flush), or -ENOBUFS (every slot taken: dropped, counted). */
int uring_tx_send(struct uring_tx *u, int fd, const void *data, size_t len);
/* Submits what is queued now: before a descriptor with queued sends closes
 * (its number could name another socket by the time they are submitted). */
void uring_tx_flush(struct uring_tx *u);
/* Submits what is queued, waits a moment for what is in flight, closes. */
void uring_tx_close(struct uring_tx *u);
#endif

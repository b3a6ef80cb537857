/* rxsock: the reading side of a tunnel's shared socket: recvmmsg batches, every kernel drop counted. */
#ifndef PSKTUN_RXSOCK_H
#define PSKTUN_RXSOCK_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/*
 * Why not uv_udp_recv_start: libuv hands no control messages to its
 * callback, and SO_RXQ_OVFL (the kernel's count of datagrams it dropped
 * on this socket, a full receive buffer mostly) comes as one. So the
 * socket is read here, with recvmmsg on a uv_poll_t that watches a dup of
 * the uv_udp_t's descriptor (the uv_udp_t keeps the sending side: the
 * sendbatch, uv_udp_try_send, socket options). The role's callback gets
 * what libuv would give it: one call per datagram, UV_UDP_PARTIAL when
 * truncated.
 *
 * A drop is reported with the next datagram the kernel queues; one with no
 * datagram after it (the last of a burst) would wait for the next. So after
 * each wake-up that read anything a one-shot timer looks once, a little
 * later, at the socket's drop count (SO_MEMINFO): at most one getsockopt a
 * RXSOCK_SYNC_MS, none while the socket is quiet.
 */
#define RXSOCK_BATCHES 32	/* recvmmsg calls a wake-up or a drain makes at most */
#define RXSOCK_SYNC_MS 200

struct rxsock {
	uv_timer_t sync;	/* first: its close callback frees the rxsock */
	uv_poll_t poll;
	int fd;			/* dup of the uv_udp_t's descriptor; -1 once closed */
	uv_udp_t *sock;		/* handed to the callback */
	uv_udp_recv_cb on_recv;
	uint8_t *buf;		/* batch * chunk bytes, shared with the rest of the loop */
	unsigned batch;
	size_t chunk;
	uint64_t *dropped;	/* the daemon's dropped_kernel */
	uint32_t drops_seen;	/* the kernel's count (it wraps) when we last looked */
	bool reading;
	uv_close_cb close_cb;
	void *close_data;
};

/* For sock (bound); reads nothing until rxsock_start. 0 or a negative errno.
 * buf: batch datagrams of chunk bytes each (the daemon's receive buffer). */
int rxsock_init(struct rxsock *rx, uv_loop_t *loop, uv_udp_t *sock, uint8_t *buf, unsigned batch,
		size_t chunk, uint64_t *dropped);
/* Reads from now on; drops the kernel counted on this socket before are
 * not ours unless drops_seen says so (a socket a reload hands over). */
void rxsock_start(struct rxsock *rx, uv_udp_recv_cb on_recv);
/* Reads what is queued now, up to RXSOCK_BATCHES recvmmsg calls; returns the
 * datagrams read. For callers that are about to be busy for a while. */
unsigned rxsock_drain(struct rxsock *rx);
/* Counts what the kernel dropped since we last looked (SO_MEMINFO). */
void rxsock_sync_drops(struct rxsock *rx);
/* Counts the last drops, stops reading and closes; close_cb gets the first
 * member (the rxsock's first bytes), the last handle closed, with close_data
 * as its data. */
void rxsock_close(struct rxsock *rx, uv_close_cb close_cb, void *close_data);
#endif

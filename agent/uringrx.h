/* uringrx: session sockets' receives kept armed in io_uring: multishot recvmsg into a ring of provided buffers. */
#ifndef PSKTUN_URINGRX_H
#define PSKTUN_URINGRX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/*
 * Without a ring a session socket's datagram costs the loop's epoll_wait (shared)
 * and one recvmmsg on that socket. Here each socket has one multishot recvmsg
 * in the kernel: a datagram that arrives is read into one of the ring's
 * provided buffers by the kernel (task work, on the daemon's next way into
 * the kernel) and reported as a completion; the loop watches the ring's
 * descriptor and takes the completions from shared memory, no system call.
 * Arming a socket (and re-arming, cancelling) is a submission, queued and
 * submitted once per loop iteration (a check handle).
 *
 * Bounded: URING_RX_DEPTH submissions a loop iteration (more submit at once),
 * the buffers: URING_RX_CHUNK of URING_RX_BUF_BYTES at first, a chunk more
 * each time a loop iteration found them short, up to URING_RX_BUFS_MAX (or
 * PSKTUN_IO_URING_RX_BUFS=n from the environment, a power of two, 1..32768:
 * for tests). A buffer is copied out and given back before its datagram is
 * delivered, so only the datagrams that came between two loop iterations hold
 * buffers. When every buffer is taken the kernel ends that socket's recvmsg
 * with ENOBUFS before reading the datagram: it waits in the socket's own
 * buffer, nothing is lost, the socket is re-armed and counted (ring_nobufs). A datagram larger than a buffer (max_dgram at
 * start) arrives truncated, as one larger than 64 KiB does with system calls.
 *
 * Off (the caller reads with epoll and recvmmsg, as before) when built without
 * liburing, PSKTUN_IO_URING=0, or a kernel before 6.0 (multishot recvmsg).
 */
#define URING_RX_DEPTH 256
#define URING_RX_REAP 256	/* datagrams delivered a loop iteration at most, as a shared socket's */
#define URING_RX_CHUNK 256
#define URING_RX_BUFS_MAX 8192	/* 16 MiB of 2 KiB buffers, at 10,000 busy sessions and more */
#define URING_RX_BUF_BYTES 2048	/* a buffer holds a 16-byte header and the datagram */

struct uring_rx;

/* One socket's side, embedded in its owner. */
struct uring_rx_sock {
	int fd;
	bool armed;		/* a multishot recvmsg queued or in the kernel */
	bool ending;		/* cancelled: no more deliveries */
	/* A datagram (data: the caller's scratch buffer, valid during the call),
	 * or nread < 0: a negative errno (ECONNREFUSED after an ICMP error). */
	void (*on_recv)(struct uring_rx_sock *rs, ssize_t nread, uint8_t *data, bool truncated);
	/* After uring_rx_cancel returned true: the kernel let go of rs. */
	void (*on_ended)(struct uring_rx_sock *rs);
};

/* 0 and *out, or a negative errno with why (a sentence) set. scratch: where a
 * datagram is copied for delivery (scratch_len bytes, at least max_dgram). */
int uring_rx_new(uv_loop_t *loop, size_t max_dgram, uint8_t *scratch, size_t scratch_len,
		 uint64_t *nobufs, struct uring_rx **out, const char **why);
/* Buffers now, at most, and their size, for the start message. */
void uring_rx_describe(const struct uring_rx *u, unsigned *bufs, unsigned *max, unsigned *bytes);
/* Keeps rs->fd read from now on (submitted with the loop iteration's others). */
int uring_rx_arm(struct uring_rx *u, struct uring_rx_sock *rs);
/* Before rs->fd closes: no more deliveries. true: the kernel still holds rs,
 * on_ended(rs) comes later; false: rs is free to go now. */
bool uring_rx_cancel(struct uring_rx *u, struct uring_rx_sock *rs);
/* Cancels what is left, waits a moment for the kernel to let go of every
 * socket (their on_ended run), closes. */
void uring_rx_close(struct uring_rx *u);
#endif

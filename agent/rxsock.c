/* rxsock: the reading side of a tunnel's shared socket: recvmmsg batches, every kernel drop counted. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sock_diag.h>
#include "rxsock.h"

#ifndef SO_RXQ_OVFL
#define SO_RXQ_OVFL 40
#endif
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

#define RXSOCK_BATCH_MAX 64

/* The kernel's counter is 32 bits and wraps: count what it moved since we looked. */
static void drops_now(struct rxsock *rx, uint32_t now)
{
	uint32_t delta = now - rx->drops_seen;

	/* A value from an older datagram (queued before a later sample) is
	 * behind, not 4 billion ahead. */
	if (delta == 0 || delta > UINT32_MAX / 2)
		return;
	*rx->dropped += delta;
	rx->drops_seen = now;
}

void rxsock_sync_drops(struct rxsock *rx)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mem);

	if (rx->fd < 0 || getsockopt(rx->fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 ||
	    len <= SK_MEMINFO_DROPS * sizeof(mem[0]))
		return;
	drops_now(rx, mem[SK_MEMINFO_DROPS]);
}

static void on_sync(uv_timer_t *timer)
{
	rxsock_sync_drops(timer->data);
}

/* One recvmmsg: the datagrams it took (0: none queued, or an error). */
static unsigned read_batch(struct rxsock *rx)
{
	struct mmsghdr msg[RXSOCK_BATCH_MAX];
	struct iovec iov[RXSOCK_BATCH_MAX];
	struct sockaddr_storage from[RXSOCK_BATCH_MAX];
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} ctl[RXSOCK_BATCH_MAX];
	int n;

	memset(msg, 0, sizeof(*msg) * rx->batch);
	for (unsigned i = 0; i < rx->batch; i++) {
		iov[i].iov_base = rx->buf + i * rx->chunk;
		iov[i].iov_len = rx->chunk;
		msg[i].msg_hdr.msg_name = &from[i];
		msg[i].msg_hdr.msg_namelen = sizeof(from[i]);
		msg[i].msg_hdr.msg_iov = &iov[i];
		msg[i].msg_hdr.msg_iovlen = 1;
		msg[i].msg_hdr.msg_control = ctl[i].buf;
		msg[i].msg_hdr.msg_controllen = sizeof(ctl[i].buf);
	}
	do
		n = recvmmsg(rx->fd, msg, rx->batch, MSG_DONTWAIT, NULL);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return 0;	/* EAGAIN; anything else (ENOMEM) is the kernel's to retry */
	for (int i = 0; i < n; i++) {
		struct msghdr *h = &msg[i].msg_hdr;
		uv_buf_t b = uv_buf_init(iov[i].iov_base, msg[i].msg_len);

		for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
				uint32_t v;

				memcpy(&v, CMSG_DATA(c), sizeof(v));
				drops_now(rx, v);
			}
		}
		if (!rx->reading)	/* the callback closed us */
			continue;
		rx->on_recv(rx->sock, msg[i].msg_len, &b, (const struct sockaddr *)&from[i],
			    (h->msg_flags & MSG_TRUNC) ? UV_UDP_PARTIAL : 0);
	}
	return n;
}

unsigned rxsock_drain(struct rxsock *rx)
{
	unsigned total = 0, n;

	if (!rx->reading)
		return 0;
	for (unsigned i = 0; i < RXSOCK_BATCHES && rx->reading; i++) {
		n = read_batch(rx);
		total += n;
		if (n < rx->batch)
			break;	/* EAGAIN, or the last of what was queued */
	}
	if (total && rx->reading && !uv_is_active((uv_handle_t *)&rx->sync))
		uv_timer_start(&rx->sync, on_sync, RXSOCK_SYNC_MS, 0);
	return total;
}

static void on_readable(uv_poll_t *p, int status, int events)
{
	(void)events;
	if (status < 0)
		return;
	rxsock_drain(p->data);
}

int rxsock_init(struct rxsock *rx, uv_loop_t *loop, uv_udp_t *sock, uint8_t *buf, unsigned batch,
		size_t chunk, uint64_t *dropped)
{
	uv_os_fd_t fd;
	int one = 1, r;

	memset(rx, 0, sizeof(*rx));
	rx->fd = -1;
	rx->sock = sock;
	rx->buf = buf;
	rx->batch = batch < RXSOCK_BATCH_MAX ? batch : RXSOCK_BATCH_MAX;
	rx->chunk = chunk;
	rx->dropped = dropped;
	r = uv_fileno((uv_handle_t *)sock, &fd);
	if (r < 0)
		return r;
	/* Its own descriptor: libuv watches a descriptor with one handle only. */
	rx->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (rx->fd < 0)
		return -errno;
	if (setsockopt(rx->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0 ||
	    (r = uv_poll_init(loop, &rx->poll, rx->fd)) < 0) {
		r = r < 0 ? r : -errno;
		close(rx->fd);
		rx->fd = -1;
		return r;
	}
	rx->poll.data = rx;
	uv_timer_init(loop, &rx->sync);
	rx->sync.data = rx;
	uv_unref((uv_handle_t *)&rx->sync);	/* it alone keeps no loop running */
	return 0;
}

void rxsock_start(struct rxsock *rx, uv_udp_recv_cb on_recv)
{
	rx->on_recv = on_recv;
	rx->reading = true;
	uv_poll_start(&rx->poll, UV_READABLE, on_readable);
}

static void on_poll_closed(uv_handle_t *h)
{
	struct rxsock *rx = h->data;

	close(rx->fd);
	rx->fd = -1;
	rx->sync.data = rx->close_data;
	uv_close((uv_handle_t *)&rx->sync, rx->close_cb);
}

void rxsock_close(struct rxsock *rx, uv_close_cb close_cb, void *close_data)
{
	if (rx->reading)
		rxsock_sync_drops(rx);
	rx->reading = false;
	uv_timer_stop(&rx->sync);
	rx->close_cb = close_cb;
	rx->close_data = close_data;
	uv_close((uv_handle_t *)&rx->poll, on_poll_closed);
}

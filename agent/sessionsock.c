/* sessionsock: a session's own connected UDP socket, read with one recvmmsg per readiness. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "addr.h"
#include "daemon.h"
#include "session.h"
#include "tunnel.h"
#include "uring.h"
#include "sessionsock.h"

#define SOCKSET_EVENTS 64	/* ready sockets taken per wake-up; the rest stay ready */

static void sock_read(struct session_sock *ss, struct daemon *d)
{
	struct mmsghdr msg[PSKTUN_RX_BATCH];
	struct iovec iov[PSKTUN_RX_BATCH];
	int n;

	memset(msg, 0, sizeof(msg));
	for (int i = 0; i < PSKTUN_RX_BATCH; i++) {
		iov[i].iov_base = d->rxbuf + (size_t)i * PSKTUN_DGRAM_MAX;
		iov[i].iov_len = PSKTUN_DGRAM_MAX;
		msg[i].msg_hdr.msg_iov = &iov[i];
		msg[i].msg_hdr.msg_iovlen = 1;
	}
	n = recvmmsg(ss->fd, msg, PSKTUN_RX_BATCH, MSG_DONTWAIT, NULL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			ss->on_recv(ss->s, -errno, NULL, false);
		return;
	}
	for (int i = 0; i < n && !ss->closed; i++)
		ss->on_recv(ss->s, msg[i].msg_len, iov[i].iov_base,
			    msg[i].msg_hdr.msg_flags & MSG_TRUNC);
}

static void on_set_ready(uv_poll_t *p, int status, int events)
{
	struct sockset *set = p->data;
	struct daemon *d = p->loop->data;
	struct epoll_event ev[SOCKSET_EVENTS];
	int n;

	if (status < 0 || set->closing)
		return;
	n = epoll_wait(set->epfd, ev, SOCKSET_EVENTS, 0);
	for (int i = 0; i < n; i++) {
		struct session_sock *ss = ev[i].data.ptr;

		/* A callback may close sockets named later in ev: they stay
		 * allocated (on the dead list) until the check phase. */
		if (ss->closed)
			continue;
		if (ev[i].events & EPOLLERR) {
			/* An ICMP error is pending (port unreachable): take it,
			 * or epoll reports it forever; the socket stays open for
			 * the answer to a retransmitted handshake. */
			int err = 0;
			socklen_t len = sizeof(err);

			getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err)
				ss->on_recv(ss->s, -err, NULL, false);
			if (ss->closed)
				continue;
		}
		if (ev[i].events & EPOLLIN)
			sock_read(ss, d);
	}
}

static void sock_free(struct session_sock *ss)
{
	if (ss->done)
		ss->done(ss->done_arg);
	free(ss);
}

static void reap(struct sockset *set)
{
	while (set->dead) {
		struct session_sock *ss = set->dead;

		set->dead = ss->next_dead;
		if (ss->rx.armed && set->ring)
			ss->held = true;	/* the ring's on_ended frees it */
		else
			sock_free(ss);
	}
}

#define RX_SOCK(rs) ((struct session_sock *)((char *)(rs) - offsetof(struct session_sock, rx)))

static void ring_recv(struct uring_rx_sock *rs, ssize_t nread, uint8_t *data, bool truncated)
{
	struct session_sock *ss = RX_SOCK(rs);

	if (!ss->closed)
		ss->on_recv(ss->s, nread, data, truncated);
}

static void ring_ended(struct uring_rx_sock *rs)
{
	struct session_sock *ss = RX_SOCK(rs);

	if (ss->held)
		sock_free(ss);
}

static void on_reap(uv_check_t *c)
{
	struct sockset *set = c->data;

	uv_check_stop(c);
	reap(set);
}

/* Receives through io_uring if it can, said once (by the leader: the workers' alike). */
static void ring_open(struct sockset *set, struct daemon *d)
{
	const char *why = NULL;
	unsigned bufs, max, bytes;
	int r;

	r = uring_rx_new(d->loop, d->cfg->dtls.mtu, d->rxbuf, PSKTUN_DGRAM_MAX, &d->stats.ring_nobufs,
			 &set->ring, &why);
	if (r < 0)
		set->ring = NULL;
	if (d->leader)
		return;
	if (set->ring) {
		uring_rx_describe(set->ring, &bufs, &max, &bytes);
		log_notice("receives on session sockets: io_uring (%u buffers of %u bytes, up to %u)",
			   bufs, bytes, max);
	} else {
		log_notice("receives on session sockets: system calls (io_uring: %s)", why);
	}
}

static int sockset_open(struct sockset *set, struct daemon *d)
{
	uv_loop_t *loop = d->loop;
	int r;

	set->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (set->epfd < 0)
		return -errno;
	r = uv_poll_init(loop, &set->poll, set->epfd);
	if (r < 0) {
		close(set->epfd);
		return r;
	}
	set->open = true;
	set->poll.data = set;
	uv_check_init(loop, &set->reap);
	set->reap.data = set;
	uv_poll_start(&set->poll, UV_READABLE, on_set_ready);
	ring_open(set, d);
	return 0;
}

static void on_reap_closed(uv_handle_t *h)
{
	struct sockset *set = h->data;

	reap(set);
	set->closed = true;
}

void sockset_close(struct sockset *set)
{
	if (!set->open || set->closing)
		return;
	set->closing = true;
	uring_rx_close(set->ring);	/* the kernel lets go of the last sockets: on_ended */
	set->ring = NULL;
	uv_close((uv_handle_t *)&set->poll, NULL);
	close(set->epfd);
	uv_close((uv_handle_t *)&set->reap, on_reap_closed);
}

int session_sock_open(struct session *s, const struct sockaddr *to, session_sock_cb on_recv,
		      struct session_sock **out)
{
	struct sockset *set = &s->t->d->sockset;
	struct epoll_event ev = { .events = EPOLLIN };
	struct session_sock *ss;
	int r;

	if (set->closing)
		return -ESHUTDOWN;
	if (!set->open && (r = sockset_open(set, s->t->d)) < 0)
		return r;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ss->s = s;
	ss->on_recv = on_recv;
	ev.data.ptr = ss;
	ss->fd = socket(to->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ss->fd < 0 || connect(ss->fd, to, psktun_addr_len(to)) < 0 ||
	    (!set->ring && epoll_ctl(set->epfd, EPOLL_CTL_ADD, ss->fd, &ev) < 0)) {
		r = -errno;
		goto fail;
	}
	if (set->ring) {
		ss->rx.fd = ss->fd;
		ss->rx.on_recv = ring_recv;
		ss->rx.on_ended = ring_ended;
		r = uring_rx_arm(set->ring, &ss->rx);
		if (r < 0)
			goto fail;
	}
	*out = ss;
	return 0;
fail:
	if (ss->fd >= 0)
		close(ss->fd);
	free(ss);
	return r;
}

int session_sock_send(struct session_sock *ss, const void *data, size_t len)
{
	struct uring_tx *u = ss->s->t->d->uring;
	ssize_t n;

	if (u) {
		int r = uring_tx_send(u, ss->fd, data, len);

		if (r == -ENOBUFS)	/* dropped, and counted as dropped_ring */
			return 0;
		if (r != -EMSGSIZE)
			return r;
		uring_tx_flush(u);	/* too big for a slot: after what is queued */
	}
	do
		n = send(ss->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

void session_sock_close(struct session_sock *ss, void (*done)(void *arg), void *arg)
{
	struct sockset *set = &ss->s->t->d->sockset;

	ss->closed = true;
	/* Queued sends name the descriptor by number: submitted now, they are
	 * the kernel's (it holds the file until they are done). */
	uring_tx_flush(ss->s->t->d->uring);
	if (set->ring)		/* before close: an arm still queued names the number */
		uring_rx_cancel(set->ring, &ss->rx);
	close(ss->fd);		/* leaves the epoll set, or the ring lets go once cancelled */
	ss->fd = -1;
	if (set->closed) {
		free(ss);
		if (done)
			done(arg);
		return;
	}
	ss->done = done;
	ss->done_arg = arg;
	ss->next_dead = set->dead;
	set->dead = ss;
	if (!set->closing)
		uv_check_start(&set->reap, on_reap);
}

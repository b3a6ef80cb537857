/* sessionsock: a session's own connected UDP socket, read with one recvmmsg per readiness. */
#include <errno.h>
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

static void reap(struct sockset *set)
{
	while (set->dead) {
		struct session_sock *ss = set->dead;

		set->dead = ss->next_dead;
		if (ss->done)
			ss->done(ss->done_arg);
		free(ss);
	}
}

static void on_reap(uv_check_t *c)
{
	struct sockset *set = c->data;

	uv_check_stop(c);
	reap(set);
}

static int sockset_open(struct sockset *set, uv_loop_t *loop)
{
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
	if (!set->open && (r = sockset_open(set, s->t->d->loop)) < 0)
		return r;
	ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	ss->s = s;
	ss->on_recv = on_recv;
	ev.data.ptr = ss;
	ss->fd = socket(to->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ss->fd < 0 || connect(ss->fd, to, psktun_addr_len(to)) < 0 ||
	    epoll_ctl(set->epfd, EPOLL_CTL_ADD, ss->fd, &ev) < 0) {
		r = -errno;
		if (ss->fd >= 0)
			close(ss->fd);
		free(ss);
		return r;
	}
	*out = ss;
	return 0;
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
	close(ss->fd);		/* leaves the epoll set: nothing else holds the file */
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

/* sessionsock: a session's own connected UDP socket, read with one recvmmsg per readiness. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "addr.h"
#include "daemon.h"
#include "sessionsock.h"

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct session_sock *ss = p->data;
	struct daemon *d = p->loop->data;
	struct mmsghdr msg[PSKTUN_RX_BATCH];
	struct iovec iov[PSKTUN_RX_BATCH];
	int n;

	if (status < 0) {
		/* POLLERR: an ICMP error is pending (port unreachable). libuv has
		 * stopped the handle; take the error and go on listening, or the
		 * answer to a retransmitted handshake would never be read. */
		int err = 0;
		socklen_t len = sizeof(err);

		getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (!ss->closed)
			uv_poll_start(&ss->poll, UV_READABLE, on_poll);
		if (err)
			ss->on_recv(ss->s, -err, NULL, false);
		return;
	}
	if (!(events & UV_READABLE))
		return;
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

int session_sock_open(struct session *s, const struct sockaddr *to, session_sock_cb on_recv,
		      struct session_sock **out)
{
	struct session_sock *ss = calloc(1, sizeof(*ss));
	int r;

	if (!ss)
		return -ENOMEM;
	ss->s = s;
	ss->on_recv = on_recv;
	ss->fd = socket(to->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ss->fd < 0 || connect(ss->fd, to, psktun_addr_len(to)) < 0) {
		r = -errno;
		if (ss->fd >= 0)
			close(ss->fd);
		free(ss);
		return r;
	}
	r = uv_poll_init_socket(s->t->d->loop, &ss->poll, ss->fd);
	if (r < 0) {
		close(ss->fd);
		free(ss);
		return r;
	}
	ss->poll.data = ss;
	uv_poll_start(&ss->poll, UV_READABLE, on_poll);
	*out = ss;
	return 0;
}

int session_sock_send(struct session_sock *ss, const void *data, size_t len)
{
	ssize_t n;

	do
		n = send(ss->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

void session_sock_close(struct session_sock *ss, uv_close_cb close_cb)
{
	ss->closed = true;
	uv_close((uv_handle_t *)&ss->poll, close_cb);	/* out of epoll now... */
	close(ss->fd);					/* ...so the fd may go */
	ss->fd = -1;
}

/* egress: the one place that picks the socket a datagram leaves by (egress.h). */
#include <errno.h>
#include <uv.h>
#include "egress.h"
#include "sendbatch.h"
#include "session.h"
#include "sessionsock.h"
#include "tunnel.h"

int egress_send(struct tunnel *t, struct session *s, enum egress_side side, const struct sockaddr *to,
		const void *buf, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)buf, len);

	if (side == EGRESS_ACCEPT) {
		if (!to && !s)
			return -EDESTADDRREQ;
		return sendbatch_add(t->batch, to ? to : (const struct sockaddr *)&s->peer, buf, len);
	}
	if (t->shared_plain)
		return uv_udp_try_send(t->shared_plain, &b, 1,
				       to ? to : (const struct sockaddr *)&t->connect_addr);
	if (!s)
		return -ENOTSUP;	/* no socket toward `connect` but a session's */
	return s->sock ? session_sock_send(s->sock, buf, len) : -EBADF;
}

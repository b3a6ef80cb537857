/* sendbatch: datagrams for one shared socket, collected during a loop iteration and sent with one sendmmsg. */
#include <errno.h>
#include <string.h>
#include "addr.h"
#include "sendbatch.h"

static void on_check(uv_check_t *check)
{
	sendbatch_flush(check->data);
}

static void on_idle(uv_idle_t *idle)
{
	sendbatch_flush(idle->data);
}

void sendbatch_init(struct sendbatch *b, uv_loop_t *loop, uv_udp_t *sock, uint64_t *dropped)
{
	b->sock = sock;
	b->n = 0;
	b->used = 0;
	b->dropped = dropped;
	uv_check_init(loop, &b->check);
	b->check.data = b;
	uv_idle_init(loop, &b->idle);
	b->idle.data = b;
}

void sendbatch_flush(struct sendbatch *b)
{
	uv_os_fd_t fd;
	unsigned done = 0;
	int r;

	if (!b->n)
		return;
	uv_check_stop(&b->check);
	uv_idle_stop(&b->idle);
	if (uv_fileno((uv_handle_t *)b->sock, &fd) < 0) {
		*b->dropped += b->n;
		b->n = 0;
		b->used = 0;
		return;
	}
	while (done < b->n) {
		r = sendmmsg(fd, b->msg + done, b->n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			done += r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		/* The first one failed (buffer full, unreachable): lose it, go on. */
		(*b->dropped)++;
		done++;
	}
	b->n = 0;
	b->used = 0;
}

int sendbatch_add(struct sendbatch *b, const struct sockaddr *to, const void *data, size_t len)
{
	unsigned i;

	if (b->n == SENDBATCH_MAX || b->used + len > SENDBATCH_BYTES)
		sendbatch_flush(b);
	if (len > SENDBATCH_BYTES) {	/* rare: too big to batch */
		uv_buf_t buf = uv_buf_init((char *)data, len);

		return uv_udp_try_send(b->sock, &buf, 1, to) < 0 ? -EIO : 0;
	}
	i = b->n++;
	memcpy(b->bytes + b->used, data, len);
	memcpy(&b->addr[i], to, psktun_addr_len(to));
	b->iov[i].iov_base = b->bytes + b->used;
	b->iov[i].iov_len = len;
	memset(&b->msg[i], 0, sizeof(b->msg[i]));
	b->msg[i].msg_hdr.msg_name = &b->addr[i];
	b->msg[i].msg_hdr.msg_namelen = psktun_addr_len(to);
	b->msg[i].msg_hdr.msg_iov = &b->iov[i];
	b->msg[i].msg_hdr.msg_iovlen = 1;
	b->used += len;
	if (i == 0) {
		uv_check_start(&b->check, on_check);
		uv_idle_start(&b->idle, on_idle);
	}
	return 0;
}

static void on_idle_closed(uv_handle_t *h)
{
	struct sendbatch *b = h->data;

	uv_close((uv_handle_t *)&b->check, b->close_cb);
}

void sendbatch_deinit(struct sendbatch *b, uv_close_cb close_cb)
{
	sendbatch_flush(b);
	b->close_cb = close_cb;
	uv_close((uv_handle_t *)&b->idle, on_idle_closed);
}

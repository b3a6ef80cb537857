/* control: the unix socket psktunctl talks to: one command line in, key=value lines out. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"

#define CONTROL_CLIENTS_MAX 16
#define CONTROL_LINE_MAX 256

struct ctl_client {
	uv_pipe_t pipe;
	struct daemon *d;
	char line[CONTROL_LINE_MAX];
	size_t len;
	bool answered;
	uv_write_t req;
	char *out;
	size_t out_len, out_cap;
};

static unsigned n_clients;

static void out_printf(struct ctl_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct ctl_client *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(c->out ? c->out + c->out_len : NULL,
			      c->out ? c->out_cap - c->out_len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (c->out && c->out_len + n < c->out_cap) {
			c->out_len += n;
			return;
		}
		size_t cap = (c->out_cap ? c->out_cap * 2 : 4096) + n;
		char *p = realloc(c->out, cap);

		if (!p)
			return;
		c->out = p;
		c->out_cap = cap;
	}
}

static void write_stats(struct ctl_client *c)
{
	struct daemon *d = c->d;

	out_printf(c, "sessions=%u\n", d->n_sessions);
	out_printf(c, "handshaking=%u\n", d->n_handshaking);
	{
		uint64_t n = 0, bytes = 0;

		for (struct tunnel *t = d->tunnels; t; t = t->next) {
			n += t->resume.n;
			bytes += t->resume.bytes;
		}
		out_printf(c, "resumable=%llu\nresumable_bytes=%llu\n", (unsigned long long)n,
			   (unsigned long long)bytes);
	}
#define X(n) out_printf(c, #n "=%llu\n", (unsigned long long)d->stats.n);
	PSKTUN_STATS(X)
#undef X
}

static void write_sessions(struct ctl_client *c)
{
	struct daemon *d = c->d;
	uint64_t now = daemon_now_ms(d);
	char addr[PSKTUN_ADDRSTRLEN];

	for (struct tunnel *t = d->tunnels; t; t = t->next) {
		for (struct session *s = t->sessions; s; s = s->next) {
			psktun_addr_format((struct sockaddr *)&s->peer, addr, sizeof(addr));
			out_printf(c, "tunnel=%s identity=%s state=%s peer=%s last_activity_s=%llu "
				   "plain_in=%llu plain_out=%llu records_in=%llu records_out=%llu\n",
				   t->conf.name, s->identity_len ? s->identity : "-",
				   session_state_name(s->state), s->peer.ss_family ? addr : "-",
				   (unsigned long long)((now - s->last_rx_ms) / 1000),
				   (unsigned long long)s->plain_in, (unsigned long long)s->plain_out,
				   (unsigned long long)s->records_in, (unsigned long long)s->records_out);
		}
	}
}

static void on_client_closed(uv_handle_t *h)
{
	struct ctl_client *c = h->data;

	free(c->out);
	free(c);
	n_clients--;
}

static void on_written(uv_write_t *req, int status)
{
	struct ctl_client *c = req->data;

	uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void answer(struct ctl_client *c)
{
	struct daemon *d = c->d;
	char *cmd = c->line;
	uv_buf_t b;

	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	cmd[strcspn(cmd, "\r\n")] = '\0';
	if (!strcmp(cmd, "stats")) {
		write_stats(c);
	} else if (!strcmp(cmd, "sessions")) {
		write_sessions(c);
	} else if (!strcmp(cmd, "reload")) {
		daemon_reload(d);
		out_printf(c, "reload=done\n");
	} else {
		out_printf(c, "error=unknown command '%.64s' (try stats, sessions, reload)\n", cmd);
	}
	b = uv_buf_init(c->out, c->out_len);
	c->req.data = c;
	if (uv_write(&c->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0)
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void alloc_line(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *c = h->data;

	buf->base = c->line + c->len;
	buf->len = sizeof(c->line) - 1 - c->len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *c = st->data;

	if (c->answered)
		return;
	if (nread > 0) {
		c->len += nread;
		c->line[c->len] = '\0';
		if (strchr(c->line, '\n'))
			answer(c);
		else if (c->len >= sizeof(c->line) - 1)
			uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	if (nread == UV_EOF && c->len)
		answer(c);
	else if (nread < 0)
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct daemon *d = server->data;
	struct ctl_client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->d = d;
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	n_clients++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 || n_clients > CONTROL_CLIENTS_MAX) {
		uv_close((uv_handle_t *)&c->pipe, on_client_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, alloc_line, on_read);
}

int control_start(struct daemon *d, const char *path)
{
	mode_t old;
	int r;

	uv_pipe_init(d->loop, &d->control, 0);
	d->control.data = d;
	d->control_open = true;
	unlink(path);	/* a socket left by a crashed predecessor */
	old = umask(0117);	/* srw-rw----: root and the daemon's group */
	r = uv_pipe_bind(&d->control, path);
	umask(old);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&d->control, 8, on_connection);
	if (r < 0) {
		log_err("control socket %s: %s; check that its directory exists and is writable",
			path, uv_strerror(r));
		return -EIO;
	}
	return 0;
}

void control_stop(struct daemon *d)
{
	if (!d->control_open)
		return;
	d->control_open = false;
	uv_close((uv_handle_t *)&d->control, NULL);
	if (d->cfg && d->cfg->control)
		unlink(d->cfg->control);
}

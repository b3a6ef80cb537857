/* tunnel: one `tunnels` entry: its accept socket, the `connect` address, its plugin. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "addr.h"
#include "daemon.h"
#include "egress.h"
#include "log.h"
#include "meters.h"
#include "pluginhost.h"
#include "role.h"
#include "rxsock.h"
#include "sendbatch.h"
#include "session.h"
#include "sessionsock.h"
#include "tunnel.h"

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

bool tunnel_conf_equal(const struct psktun_conf_tunnel *a, const struct psktun_conf_tunnel *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->plugin, b->plugin) ||
	    !str_eq(a->accept, b->accept) || !str_eq(a->connect, b->connect) ||
	    a->n_options != b->n_options)
		return false;
	for (size_t i = 0; i < a->n_options; i++)
		if (!str_eq(a->options[i].key, b->options[i].key) ||
		    !str_eq(a->options[i].value, b->options[i].value))
			return false;
	return true;
}

void tunnel_count_reason(struct tunnel *t, enum psktun_reason r)
{
	struct psktun_stats *st = &t->d->stats;

	switch (r) {
	case PSKTUN_REASON_MALFORMED: st->dropped_malformed++; break;
	case PSKTUN_REASON_POLICY: st->dropped_policy++; break;
	case PSKTUN_REASON_UNKNOWN: st->dropped_unknown++; break;
	case PSKTUN_REASON_NONE: break;
	}
}

/* The tunnel's plain side: the other one than its DTLS peers' (role.h). */
static enum egress_side plain_side(const struct tunnel *t)
{
	return t->ops->dtls_side == EGRESS_ACCEPT ? EGRESS_CONNECT : EGRESS_ACCEPT;
}

int tunnel_send_plain(struct tunnel *t, struct session *s, const struct sockaddr *to, const uint8_t *buf,
		      size_t len)
{
	int r = egress_send(t, s, plain_side(t), to, buf, len);

	if (r == -ENOTSUP)	/* no socket there: nothing could leave, nothing was lost */
		return r;
	if (r < 0) {
		t->d->stats.dropped_send++;
		return -EIO;
	}
	t->d->stats.plain_out++;
	return 0;
}

void tunnel_alloc_rx(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct daemon *d = h->loop->data;

	buf->base = (char *)d->rxbuf;
	buf->len = PSKTUN_DGRAM_MAX;
}

/* The tunnel goes live: until now (a reload being prepared) it read nothing. */
void tunnel_start(struct tunnel *t)
{
	t->started = true;
	rxsock_start(t->rx, t->on_recv);
	if (t->ops->live)
		t->ops->live(t);
	if (t->plugin_timer_ms)
		plugin_tunnel_timer_start(t);
}

/* A datagram for the session's plain side: gateway, to the meter's latest
 * address; terminator, to the backend (its own socket or the shared one). */
int session_send_plain(struct session *s, const uint8_t *buf, size_t len)
{
	int r = tunnel_send_plain(s->t, s, NULL, buf, len);

	if (r < 0)
		return -EIO;
	s->plain_out++;
	s->plain_out_bytes += len;
	return 0;
}

/* Where a datagram the plugin let through goes on: into the tunnel (uplink), or out of it. */
static void pass_on(struct session *s, enum tunnel_dir dir, const uint8_t *buf, size_t len)
{
	if (dir == TUNNEL_UPLINK)
		session_send_tunnel(s, buf, len);
	else
		session_send_plain(s, buf, len);
}

/*
 * The one place a plugin's verdict is applied. UPLINK: plaintext from the
 * plain side (a meter, a backend) on its way into session s (NULL: none yet;
 * only REPLY then); a REPLY goes back to `from`. DOWNLINK: plaintext a
 * record of s carried; a REPLY goes back into the tunnel. CLOSE forwards
 * what is left of the datagram first; a session not yet up closes once its
 * queue has gone (session.c: closing_after_send).
 */
void tunnel_apply_verdict(struct tunnel *t, struct session *s, enum tunnel_dir dir, enum psktun_verdict v,
			  enum psktun_reason reason, const struct sockaddr *from, uint8_t *buf, size_t len)
{
	switch (v) {
	case PSKTUN_FORWARD:
		pass_on(s, dir, buf, len);
		break;
	case PSKTUN_DROP:
		tunnel_count_reason(t, reason);
		break;
	case PSKTUN_REPLY:
		tunnel_count_reason(t, reason);
		t->d->stats.replies_local++;
		if (dir == TUNNEL_UPLINK)
			tunnel_send_plain(t, s, from, buf, len);
		else
			session_send_tunnel(s, buf, len);
		break;
	case PSKTUN_CLOSE:
		if (len)
			pass_on(s, dir, buf, len);
		if (dir == TUNNEL_UPLINK && s->state != SESSION_ESTABLISHED)
			s->closing_after_send = true;
		else
			session_close(s, CLOSE_PLUGIN);
		break;
	}
}

/* A datagram decrypted from the session (role_ops.deliver): the plugin's verdict, then the plain side. */
void tunnel_deliver(struct session *s, uint8_t *buf, size_t len)
{
	struct tunnel *t = s->t;
	enum psktun_reason reason = PSKTUN_REASON_NONE;
	enum psktun_verdict v = plugin_on_tunnel(s, buf, &len, sizeof(t->d->txbuf), &reason);

	tunnel_apply_verdict(t, s, TUNNEL_DOWNLINK, v, reason, (struct sockaddr *)&s->peer, buf, len);
}

/* A session's own UDP socket, connected to the tunnel's `connect` (gateway: the
 * DTLS server; terminator: the backend). */
int session_socket_open(struct session *s, session_sock_cb on_recv, const char *what)
{
	struct tunnel *t = s->t;
	int r = session_sock_open(s, (struct sockaddr *)&t->connect_addr, on_recv, &s->sock);

	if (r < 0) {
		log_warn("tunnel %s: cannot open a socket to %s %s for %s: %s", t->conf.name, what,
			 t->conf.connect, SESSION_ID(s), strerror(-r));
		return -EIO;
	}
	return 0;
}

static int resolve_result(struct tunnel *t, int status, struct addrinfo *res)
{
	if (status < 0 || !res) {
		log_warn("tunnel %s: cannot resolve connect %s:%s: %s; will try again",
			 t->conf.name, t->connect_host, t->connect_port, uv_strerror(status));
		return -EHOSTUNREACH;
	}
	memcpy(&t->connect_addr, res->ai_addr, res->ai_addrlen);
	t->connect_resolved = true;
	t->resolved_ms = daemon_now_ms(t->d);
	return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct tunnel *t = req->data;
	int r;

	t->resolving = false;
	r = resolve_result(t, status, res);
	uv_freeaddrinfo(res);
	t->open_handles--;
	if (t->closing) {
		if (t->open_handles == 0)
			free(t);
		return;
	}
	/* Start (or fail) every session that waited for the answer. */
	for (struct session *s = t->sessions, *next; s; s = next) {
		next = s->next;
		if (s->state != SESSION_RESOLVING)
			continue;
		if (r == 0) {
			session_request_handshake(s);
		} else {
			session_set_state(s, SESSION_BACKOFF);
			session_close(s, CLOSE_ERROR);
		}
	}
}

int tunnel_resolve(struct tunnel *t)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM };
	int r;

	if (t->resolving)
		return 0;
	t->resolve_req.data = t;
	r = uv_getaddrinfo(t->d->loop, &t->resolve_req, on_resolved, t->connect_host,
			   t->connect_port, &hints);
	if (r < 0) {
		log_warn("tunnel %s: cannot start resolving %s:%s: %s", t->conf.name, t->connect_host,
			 t->connect_port, uv_strerror(r));
		return -EAGAIN;
	}
	t->resolving = true;
	t->open_handles++;
	return 0;
}

static void on_tunnel_handle_closed(uv_handle_t *h)
{
	struct tunnel *t = h->data;

	if (h != (uv_handle_t *)&t->sock)
		free(h);
	if (--t->open_handles == 0)
		free(t);
}

/* Workers: each binds its own socket to the address; the kernel hashes a
 * peer's address and port to one of them, so a peer stays with one worker. */
static int bind_reuseport(uv_udp_t *u, const struct sockaddr *addr)
{
	int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, r;

	if (fd < 0)
		return uv_translate_sys_error(errno);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, addr, psktun_addr_len(addr)) < 0) {
		r = uv_translate_sys_error(errno);
		close(fd);
		return r;
	}
	r = uv_udp_open(u, fd);
	if (r < 0)
		close(fd);
	return r;
}

/* A socket of a tunnel that a reload retires, for the tunnel that replaces it:
 * the same socket (dup), so nothing is unbound on the way and no datagram
 * waiting in it is lost. */
static int share_socket(uv_udp_t *from, uv_udp_t *to)
{
	uv_os_fd_t fd;
	int r, nfd;

	r = uv_fileno((uv_handle_t *)from, &fd);
	if (r < 0)
		return r;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return uv_translate_sys_error(errno);
	r = uv_udp_open(to, nfd);
	if (r < 0)
		close(nfd);
	return r;
}

/*
 * After a power cut every meter behind a router reports at once, and a
 * terminator restarting sees every gateway at once: the shared socket must
 * hold such a burst while the loop gets to it. The kernel caps SO_RCVBUF at
 * net.core.rmem_max; SO_RCVBUFFORCE (CAP_NET_ADMIN) does not. Said once a
 * process when less was obtained: what to raise, and that drops are counted.
 */
static void size_receive_buffer(struct tunnel *t)
{
	static int said;
	int want = PSKTUN_RCVBUF, got = 0;
	socklen_t len = sizeof(got);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&t->sock, &fd) < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	/* The kernel reports twice what it grants: the other half is its bookkeeping. */
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0 || got / 2 >= want)
		return;
	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		log_warn("tunnel %s: the receive buffer of %s is %d bytes, less than the %d asked: a burst "
			 "of meters may overflow it (each datagram lost counts as dropped_kernel); set "
			 "sysctl net.core.rmem_max=%d or give psktund CAP_NET_ADMIN",
			 t->conf.name, t->conf.accept, got / 2, want, want);
}

/* Is there a tunnel the reload retires that listens where this one will? */
static struct tunnel *retiring_on(struct daemon *d, const struct sockaddr_storage *addr)
{
	for (struct tunnel *o = d->tunnels; o; o = o->next)
		if (o->retiring && !o->sock_handed && o->sock_open &&
		    psktun_addr_equal((const struct sockaddr *)&o->accept_addr, (const struct sockaddr *)addr, true))
			return o;
	return NULL;
}

int tunnel_open(struct daemon *d, const struct psktun_config *cfg, const struct psktun_conf_tunnel *conf,
		struct psktun_diag *diag, struct tunnel **out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_PASSIVE };
	enum psktun_mode mode = cfg->mode;
	char host[256], port[16];
	uv_getaddrinfo_t req;
	struct tunnel *t, *old;
	int r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->d = d;
	t->mode = mode;
	t->ops = mode == PSKTUN_MODE_GATEWAY ? &gateway_ops : &terminator_ops;
	r = psktun_conf_tunnel_copy(&t->conf, conf);
	if (r < 0)
		goto fail;
	t->meters = meter_table_new();
	if (!t->meters || htab_init(&t->by_identity, 64) < 0 || htab_init(&t->by_peer, 64) < 0 ||
	    htab_init(&t->bindings, 64) < 0 || htab_init(&t->pinned, 64) < 0 ||
	    resume_store_init(&t->resume, cfg->dtls.max_sessions) < 0) {
		r = -ENOMEM;
		goto fail;
	}
	if (psktun_hostport_split(conf->connect, t->connect_host, sizeof(t->connect_host),
				  t->connect_port, sizeof(t->connect_port)) < 0 ||
	    psktun_hostport_split(conf->accept, host, sizeof(host), port, sizeof(port)) < 0) {
		psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: bad address", conf->name);
		r = -EINVAL;
		goto fail;
	}
	r = uv_getaddrinfo(d->loop, &req, NULL, host, port, &hints);
	if (r < 0) {
		psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: cannot resolve accept %s: %s",
				conf->name, conf->accept, uv_strerror(r));
		r = -EINVAL;
		goto fail;
	}
	memcpy(&t->accept_addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
	uv_freeaddrinfo(req.addrinfo);

	/* Resolve `connect` once now; a failure is retried when a session needs it. */
	r = uv_getaddrinfo(d->loop, &req, NULL, t->connect_host, t->connect_port,
			   &(struct addrinfo){ .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM });
	resolve_result(t, r, r == 0 ? req.addrinfo : NULL);
	if (r == 0)
		uv_freeaddrinfo(req.addrinfo);

	uv_udp_init_ex(d->loop, &t->sock, AF_UNSPEC | UV_UDP_RECVMMSG);
	t->sock.data = t;
	t->sock_open = true;
	t->open_handles = 1;
	old = retiring_on(d, &t->accept_addr);
	if (old)
		r = share_socket(&old->sock, &t->sock);
	else
		r = d->reuseport ? bind_reuseport(&t->sock, (struct sockaddr *)&t->accept_addr)
				 : uv_udp_bind(&t->sock, (struct sockaddr *)&t->accept_addr, 0);
	if (r < 0) {
		psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: cannot listen on %s: %s",
				conf->name, conf->accept, uv_strerror(r));
		r = -EADDRINUSE;
		goto fail_sock;
	}
	if (old) {
		old->sock_handed = true;
		old->sock_handed_to = t;
	} else {
		size_receive_buffer(t);
	}
	t->rx = malloc(sizeof(*t->rx));
	if (!t->rx) {
		r = -ENOMEM;
		goto fail_sock;
	}
	r = rxsock_init(t->rx, d->loop, &t->sock, d->rxbuf, PSKTUN_RX_BATCH, PSKTUN_DGRAM_MAX,
			&d->stats.dropped_kernel);
	if (r < 0) {
		free(t->rx);
		t->rx = NULL;
		psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: cannot read from %s: %s",
				conf->name, conf->accept, uv_strerror(r));
		goto fail_sock;
	}
	t->batch = malloc(sizeof(*t->batch));
	if (!t->batch) {
		r = -ENOMEM;
		goto fail_sock;
	}
	sendbatch_init(t->batch, d->loop, &t->sock, &d->stats.dropped_send);
	if (conf->plugin) {
		t->plugin = plugin_find(conf->plugin);	/* plugin_check_config loaded it */
		if (!t->plugin) {
			psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: plugin '%s' is not loaded",
					conf->name, conf->plugin);
			r = -ENOENT;
			goto fail_sock;
		}
		r = plugin_tunnel_init(t, cfg, diag);
		if (r < 0) {
			t->plugin = NULL;
			goto fail_sock;
		}
	}
	r = t->ops->start(t, cfg);
	if (r < 0) {
		psktun_diag_add(diag, cfg->path, conf->line, "tunnel %s: cannot be set up: %s", conf->name,
				strerror(-r));
		goto fail_sock;
	}
	*out = t;
	return 0;
fail_sock:
	tunnel_close(t);
	return r;
fail:
	meter_table_free(t->meters);
	resume_store_deinit(&t->resume);
	htab_deinit(&t->by_identity);
	htab_deinit(&t->by_peer);
	htab_deinit(&t->bindings);
	htab_deinit(&t->pinned);
	psktun_conf_tunnel_free(&t->conf);
	free(t);
	return r;
}

/* Closes every session with close_notify, then the tunnel's handles; freed when all are closed. */
void tunnel_close(struct tunnel *t)
{

	if (t->closing)
		return;
	while (t->sessions)
		session_close(t->sessions, t->d->stopping ? CLOSE_SHUTDOWN : CLOSE_RELOAD);
	if (t->plugin)
		plugin_tunnel_fini(t);
	if (t->ops->stop)
		t->ops->stop(t);
	htab_deinit(&t->bindings);
	htab_deinit(&t->pinned);
	htab_deinit(&t->by_identity);
	htab_deinit(&t->by_peer);
	resume_store_deinit(&t->resume);
	meter_table_free(t->meters);
	t->meters = NULL;
	free(t->hs_rate);
	free(t->alert_rate);
	t->hs_rate = t->alert_rate = NULL;
	psktun_conf_tunnel_free(&t->conf);
	t->closing = true;
	if (t->shared_plain) {
		t->shared_plain->data = t;
		t->open_handles++;
		uv_close((uv_handle_t *)t->shared_plain, on_tunnel_handle_closed);
		t->shared_plain = NULL;
	}
	if (t->plugin_timer) {
		t->plugin_timer->data = t;
		t->open_handles++;
		uv_close((uv_handle_t *)t->plugin_timer, on_tunnel_handle_closed);
		t->plugin_timer = NULL;
	}
	if (t->resolving)
		uv_cancel((uv_req_t *)&t->resolve_req);
	if (t->batch) {		/* close_notify alerts may still wait in it */
		t->open_handles++;
		t->batch->check.data = t;
		sendbatch_deinit(t->batch, on_tunnel_handle_closed);
		t->batch = NULL;
	}
	if (t->rx) {
		/* The replacement counts the socket's drops on from where we stop. */
		if (t->sock_handed_to && t->rx->reading) {
			rxsock_sync_drops(t->rx);
			if (t->sock_handed_to->rx)
				t->sock_handed_to->rx->drops_seen = t->rx->drops_seen;
		}
		t->open_handles++;
		rxsock_close(t->rx, on_tunnel_handle_closed, t);
		t->rx = NULL;
	}
	if (t->sock_open) {
		t->sock_open = false;
		uv_close((uv_handle_t *)&t->sock, on_tunnel_handle_closed);
	} else if (t->open_handles == 0) {
		free(t);
	}
}

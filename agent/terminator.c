/* terminator: the cloud end: DTLS-PSK sessions from many peers, each relayed to a plain UDP backend. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"

/* DTLS record header: type(1) version(2) epoch(2) seq(6) length(2); then the handshake header. */
#define DTLS_HDR 13
#define CT_CCS 20
#define CT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1

static unsigned record_epoch(const uint8_t *p)
{
	return (unsigned)p[3] << 8 | p[4];
}

/* version, random, session_id, cookie, cipher_suites (one), compression (one) */
#define CLIENT_HELLO_MIN (DTLS_HDR + 12 + 2 + 32 + 1 + 1 + 2 + 2 + 1 + 1)

static bool is_client_hello(const uint8_t *p, size_t len)
{
	return len >= CLIENT_HELLO_MIN && p[0] == CT_HANDSHAKE && record_epoch(p) == 0 &&
	       p[DTLS_HDR] == HS_CLIENT_HELLO;
}

#define CT_ALERT 21
#define CT_APPLICATION_DATA 23
#define LOST_ALERT_LEN 15

/*
 * Application data from an address with no session: we restarted, or a NAT
 * gave the peer a new port. DTLS 1.2 has no way to say so with authority;
 * a plaintext (epoch 0) fatal alert tells a psktun gateway to shake hands
 * again at once instead of waiting for its dead-path timers. It is smaller
 * than what provoked it and rate-limited per source, so it amplifies nothing;
 * a forged one can only cause a handshake, which dropping packets could too.
 */
static void lost_session_alert(struct tunnel *t, const struct sockaddr *to)
{
	static const uint8_t alert[LOST_ALERT_LEN] = {
		CT_ALERT, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
		2 /* fatal */, 10 /* unexpected_message */
	};
	uv_buf_t b = uv_buf_init((char *)alert, sizeof(alert));

	if (!ratelimit_take(t->alert_rate, to, daemon_now_ms(t->d)))
		return;
	if (uv_udp_try_send(&t->sock, &b, 1, to) >= 0)
		t->d->stats.lost_session_alerts++;
}

static struct session *peer_find(struct tunnel *t, const struct sockaddr *from)
{
	uint64_t h = psktun_addr_hash(from, true);

	for (struct htab_node *n = htab_first(&t->by_peer, h); n; n = htab_next(n, h)) {
		struct session *s = container_of(n, struct session, by_peer);

		if (psktun_addr_equal((struct sockaddr *)&s->peer, from, true))
			return s;
	}
	return NULL;
}

static void peer_insert(struct session *s)
{
	htab_insert(&s->t->by_peer, &s->by_peer, psktun_addr_hash((struct sockaddr *)&s->peer, true));
	s->in_by_peer = true;
}

struct cookie_dest {
	struct tunnel *t;
	const struct sockaddr *to;
};

static ssize_t cookie_push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct cookie_dest *c = ptr;

	if (sendbatch_add(c->t->batch, c->to, data, len) < 0)
		c->t->d->stats.dropped_send++;
	else
		c->t->d->stats.records_out++;
	return len;
}

/*
 * RFC 6347 4.2.1: "the server MAY choose not to do a cookie exchange when a
 * session is resumed". Over NB-IoT the exchange costs a round trip and about
 * 180 bytes, all that resumption saves; a ClientHello that names a session in
 * our cache goes straight to its handshake. Amplification stays below 2:1
 * and state stays bounded by max_handshakes and the per-source rate.
 */
static bool resumes_cached_session(struct tunnel *t, const uint8_t *p, size_t len)
{
	/* record header, handshake header, client_version, random, session_id */
	size_t off = DTLS_HDR + 12 + 2 + 32;
	uint8_t sid_len;

	if (len < off + 1)
		return false;
	sid_len = p[off];
	if (sid_len == 0 || sid_len > 32 || len < off + 1 + sid_len)
		return false;
	/* a fragmented ClientHello cannot be checked whole: let the cookie decide */
	if (p[DTLS_HDR + 6] || p[DTLS_HDR + 7] || p[DTLS_HDR + 8] ||
	    memcmp(p + DTLS_HDR + 1, p + DTLS_HDR + 9, 3))
		return false;
	return dtls_server_cache_has(t->d, p + off + 1, sid_len);
}

/*
 * A ClientHello from a peer without a session (or a new one from a peer
 * that has one). Stateless: unless it carries our cookie for this address,
 * answer with a HelloVerifyRequest and forget it.
 */
static void on_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data,
			    size_t len, struct session *old)
{
	struct daemon *d = t->d;
	gnutls_dtls_prestate_st prestate;
	struct cookie_dest dest = { t, from };
	struct session *s;
	bool resuming;
	int r;

	memset(&prestate, 0, sizeof(prestate));
	/* Not for an address that has a session (a forged hello would hijack
	 * its next handshake), nor when slots run short (spoofed hellos naming a
	 * sniffed session ID could fill them): then the cookie decides. */
	resuming = !old && d->n_handshaking < d->cfg->dtls.max_handshakes / 2 &&
		   resumes_cached_session(t, data, len);
	r = resuming ? 0 : gnutls_dtls_cookie_verify(&d->cookie_key, (void *)from, psktun_addr_len(from),
						     (void *)data, len, &prestate);
	if (r < 0) {
		gnutls_dtls_cookie_send(&d->cookie_key, (void *)from, psktun_addr_len(from), &prestate,
					&dest, cookie_push);
		d->stats.cookies_sent++;
		return;
	}
	/* The peer proved it owns its address; now it must also wait its turn. */
	if (d->n_sessions >= d->cfg->dtls.max_sessions || d->n_handshaking >= d->cfg->dtls.max_handshakes ||
	    !ratelimit_take(t->hs_rate, from, daemon_now_ms(d))) {
		d->stats.dropped_limit++;
		meter_refused(t, from, PSKTUN_FAIL_too_many_handshakes,
			      d->n_sessions >= d->cfg->dtls.max_sessions ? "max_sessions reached" :
			      d->n_handshaking >= d->cfg->dtls.max_handshakes ? "max_handshakes in progress" :
			      "over handshake_rate from this address");
		return;
	}
	s = session_new(t, "", 0);
	if (!s) {
		d->stats.dropped_limit++;
		return;
	}
	memcpy(&s->peer, from, psktun_addr_len(from));
	/* A retransmission of a ClientHello whose handshake failed gets the same
	 * answer, but is not another failure. */
	memcpy(s->hello_random, data + DTLS_HDR + 12 + 2, sizeof(s->hello_random));
	s->has_random = true;
	s->repeat = meter_hello_repeat(t, from, s->hello_random);
	if (old) {
		old->replaced_by = s;
		s->replaces = old;
	} else {
		peer_insert(s);
	}
	if (dtls_session_server(s, resuming ? NULL : &prestate) < 0) {
		d->stats.dropped_limit++;
		session_close(s, CLOSE_HANDSHAKE);
		return;
	}
	session_handshake_begin(s);
	/* The verified ClientHello is the first datagram GnuTLS reads. */
	session_on_record(s, data, len);
}

static void on_peer(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		    unsigned flags)
{
	struct tunnel *t = h->data;
	struct daemon *d = t->d;
	const uint8_t *data = (const uint8_t *)buf->base;
	struct session *s;

	if (nread <= 0 || !from)
		return;
	if ((flags & UV_UDP_PARTIAL) || nread < DTLS_HDR) {
		d->stats.dropped_malformed++;
		return;
	}
	s = peer_find(t, from);
	if (!s) {
		if (is_client_hello(data, nread)) {
			on_client_hello(t, from, data, nread, NULL);
			return;
		}
		d->stats.dropped_unknown++;
		meter_unknown_seen(t, UNKNOWN_SOURCE, "", 0, from, "no session with this address");
		if (data[0] == CT_APPLICATION_DATA && record_epoch(data) > 0 && nread >= LOST_ALERT_LEN)
			lost_session_alert(t, from);
		return;
	}
	if (s->replaced_by) {
		/* A new handshake runs beside the old session: handshake
		 * traffic goes to it, records of the old epoch to the old. */
		if (data[0] == CT_HANDSHAKE || data[0] == CT_CCS || record_epoch(data) == 0) {
			session_on_record(s->replaced_by, data, nread);
			return;
		}
	} else if (s->state == SESSION_ESTABLISHED && is_client_hello(data, nread)) {
		on_client_hello(t, from, data, nread, s);
		return;
	}
	session_on_record(s, data, nread);
}

/* A datagram from the backend for session s; NULL: it came to the shared socket
 * (a plugin's use_shared_plain) and the plugin names the session. */
static void from_backend(struct tunnel *t, struct session *s, uint8_t *data, ssize_t nread,
			 const struct sockaddr *from, bool truncated)
{
	struct daemon *d = t->d;
	size_t len = nread;
	enum psktun_reason reason = PSKTUN_REASON_NONE;
	struct session *target = NULL;
	enum psktun_verdict v;
	uv_buf_t b;

	if (nread < 0)
		return;
	d->stats.plain_in++;
	if (truncated) {
		d->stats.dropped_malformed++;
		return;
	}
	v = plugin_on_plain(t, s, from, data, &len, PSKTUN_DGRAM_MAX, &reason, &target);
	if (!s && v != PSKTUN_REPLY && !(s = target)) {
		tunnel_count_reason(t, v == PSKTUN_DROP ? reason : PSKTUN_REASON_UNKNOWN);
		return;
	}
	if (s) {
		s->plain_in++;
		s->plain_in_bytes += nread;
		session_touch(s);
	}
	switch (v) {
	case PSKTUN_FORWARD:
		session_send_tunnel(s, data, len);
		break;
	case PSKTUN_DROP:
		tunnel_count_reason(t, reason);
		break;
	case PSKTUN_REPLY:	/* back to the backend, the way it came */
		tunnel_count_reason(t, reason);
		d->stats.replies_local++;
		b = uv_buf_init((char *)data, len);
		if (t->shared_plain)
			uv_udp_try_send(t->shared_plain, &b, 1, from);
		else if (s->sock)
			session_sock_send(s->sock, data, len);
		break;
	case PSKTUN_CLOSE:
		if (len)
			session_send_tunnel(s, data, len);
		session_close(s, CLOSE_PLUGIN);
		break;
	}
}

static void on_backend(struct session *s, ssize_t nread, uint8_t *data, bool truncated)
{
	from_backend(s->t, s, data, nread, (struct sockaddr *)&s->t->connect_addr, truncated);
}

static void on_shared_backend(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			      const struct sockaddr *from, unsigned flags)
{
	if (from)
		from_backend(h->data, NULL, (uint8_t *)buf->base, nread, from, flags & UV_UDP_PARTIAL);
}

int terminator_use_shared_plain(struct tunnel *t, const struct sockaddr *local)
{
	uv_udp_t *u;
	int r;

	if (t->shared_plain)
		return -EALREADY;
	u = malloc(sizeof(*u));
	if (!u)
		return -ENOMEM;
	uv_udp_init(t->d->loop, u);
	u->data = t;
	t->shared_plain = u;
	r = uv_udp_bind(u, local, 0);
	if (r == 0)
		r = uv_udp_recv_start(u, tunnel_alloc_rx, on_shared_backend);
	if (r < 0) {
		log_err("tunnel %s: cannot use a shared backend socket: %s", t->conf.name, uv_strerror(r));
		return -EIO;
	}
	return 0;
}

static int backend_open(struct session *s)
{
	return session_socket_open(s, on_backend, "the backend");
}

void terminator_established(struct session *s)
{
	struct tunnel *t = s->t;
	struct daemon *d = t->d;
	gnutls_datum_t user = { NULL, 0 };
	const struct psktun_key *key;
	struct session *other;

	if (gnutls_psk_server_get_username2(s->tls, &user) < 0 || !user.size ||
	    user.size > PSKTUN_IDENTITY_MAX) {
		session_close(s, CLOSE_ERROR);
		return;
	}
	memcpy(s->identity, user.data, user.size);
	s->identity[user.size] = '\0';
	s->identity_len = user.size;
	key = psktun_keys_find(d->keys, s->identity, s->identity_len);
	if (key)
		dtls_key_digest(key, s->key_digest);

	/* RFC 6347 4.2.8: the old session at this address ends only now. */
	if (s->replaces) {
		struct session *old = s->replaces;

		old->replaced_by = NULL;
		s->replaces = NULL;
		session_close(old, CLOSE_REPLACED);
		d->stats.sessions_replaced++;
		peer_insert(s);
	}
	/* One session per meter: the same identity from elsewhere (a NAT rebinding) moved. */
	other = session_find_identity(t, s->identity, s->identity_len);
	if (other && other != s) {
		session_close(other, CLOSE_REPLACED);
		d->stats.sessions_replaced++;
	}
	htab_insert(&t->by_identity, &s->by_identity, identity_hash(s->identity, s->identity_len));
	s->in_by_identity = true;
	if (!t->shared_plain && backend_open(s) < 0) {
		session_close(s, CLOSE_ERROR);
		return;
	}
	plugin_session_open(s);
}

int terminator_start(struct tunnel *t)
{
	t->hs_rate = malloc(sizeof(*t->hs_rate));
	if (!t->hs_rate)
		return -ENOMEM;
	ratelimit_init(t->hs_rate, t->d->cfg->dtls.handshake_rate, t->d->cfg->dtls.handshake_burst);
	t->alert_rate = malloc(sizeof(*t->alert_rate));
	if (!t->alert_rate)
		return -ENOMEM;
	/* An alert is smaller than the record that provokes it: generous. */
	ratelimit_init(t->alert_rate, 100, 200);
	return tunnel_recv_start(t, on_peer);
}

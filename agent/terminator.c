/* terminator: the cloud end: DTLS-PSK sessions from many peers, each relayed to a plain UDP backend. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "addr.h"
#include "cache.h"
#include "daemon.h"
#include "dtls.h"
#include "egress.h"
#include "hsslots.h"
#include "log.h"
#include "meters.h"
#include "pluginhost.h"
#include "ratelimit.h"
#include "record.h"
#include "role.h"
#include "sendbatch.h"
#include "servercache.h"
#include "session.h"
#include "sessionsock.h"
#include "tunnel.h"

/*
 * Application data (or a heartbeat, the gateway's probe) from an address with
 * no session: we restarted, or a NAT gave the peer a new port. DTLS 1.2 has no way to say so with authority;
 * a plaintext (epoch 0) fatal alert tells a psktun gateway to shake hands
 * again at once instead of waiting for its dead-path timers. It is smaller
 * than what provoked it and rate-limited per source, so it amplifies nothing;
 * a forged one can only cause a handshake, which dropping packets could too.
 */
static void lost_session_alert(struct tunnel *t, const struct sockaddr *to)
{
	uint8_t alert[DTLS_PLAIN_ALERT_LEN];
	uv_buf_t b = uv_buf_init((char *)alert, sizeof(alert));

	if (!ratelimit_take(t->alert_rate, to, daemon_now_ms(t->d)))
		return;
	dtls_plain_alert(alert, DTLS_ALERT_UNEXPECTED_MESSAGE);
	/* Not batched: sent now, past the batch's own accounting (a lost one is not a drop). */
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
 * our cache goes straight to its handshake. A session ID is no secret (it
 * crosses the air in clear), so such a hello may come from anyone with any
 * source address: until the handshake completes, its address is unproven,
 * and what we send there stays within three times what came from there
 * (hsslots.c; our resumed flight is under twice a ClientHello, so it leaves,
 * a retransmission only when the client asks again). It holds no address
 * either: a hello from there that passes the cookie check replaces it.
 */
static bool resumes_cached_session(struct tunnel *t, const uint8_t *p, size_t len)
{
	const uint8_t *sid;
	size_t sid_len = dtls_client_hello_session_id(p, len, &sid);

	if (!sid_len)
		return false;
	/* nor one answering a HelloVerifyRequest (message_seq 1): GnuTLS takes it
	 * only with the cookie's prestate, even if the session is cached by now
	 * (a late Redis answer, slots no longer short) */
	if (dtls_handshake_message_seq(p) != 0)
		return false;
	return dtls_server_cache_has(t->d, sid, sid_len);
}

static bool slots_full(const struct daemon *d)
{
	return d->n_sessions >= d->cfg->dtls.max_sessions || d->n_handshaking >= d->cfg->dtls.max_handshakes;
}

/*
 * GnuTLS's session database for session-ID resumption: the process's cache
 * (servercache.c), written through to the fleet's Redis (cache.c) when there is one.
 */
static int db_store(void *ptr, gnutls_datum_t key, gnutls_datum_t data)
{
	struct session *s = ptr;
	struct daemon *d = s->t->d;
	gnutls_datum_t user = { NULL, 0 };
	const struct psktun_key *k;
	uint8_t digest[32];
	int r;

	if (gnutls_psk_server_get_username2(s->tls, &user) < 0 || !user.size)
		return -1;
	k = psktun_keys_find(d->keys, (const char *)user.data, user.size);
	if (!k)
		return -1;
	dtls_key_digest(k, digest);
	r = dtls_server_cache_store(d, &key, &data, (const char *)user.data, user.size, digest) < 0 ? -1 : 0;
	shared_cache_store(d, &key, &data, (const char *)user.data, user.size, digest);
	return r;
}

static gnutls_datum_t db_retrieve(void *ptr, gnutls_datum_t key)
{
	struct session *s = ptr;

	return dtls_server_cache_fetch(s->t->d, &key);
}

static int db_remove(void *ptr, gnutls_datum_t key)
{
	struct session *s = ptr;

	dtls_server_cache_del(s->t->d, &key);
	shared_cache_remove(s->t->d, &key);
	return 0;
}

static void db_attach(struct session *s)
{
	gnutls_db_set_ptr(s->tls, s);
	gnutls_db_set_cache_expiration(s->tls, PSKTUN_RESUME_LIFETIME_S);
	gnutls_db_set_store_function(s->tls, db_store);
	gnutls_db_set_retrieve_function(s->tls, db_retrieve);
	gnutls_db_set_remove_function(s->tls, db_remove);
}

/* A handshake yields its slot to another: counted as failed, and closed. */
static void evict(struct session *s, const char *why)
{
	struct daemon *d = s->t->d;

	d->stats.handshakes_evicted++;
	d->stats.handshakes_failed++;
	meter_handshake_failed(s, PSKTUN_FAIL_too_many_handshakes, why, NULL);
	session_close(s, CLOSE_HANDSHAKE);
}

/* All slots are taken: the source holding the most yields one (hsslots.c picks which). */
static bool make_room(struct daemon *d, const struct sockaddr *from)
{
	struct session *victim = hs_slot_victim(d, from);
	unsigned held;

	if (!victim)
		return false;
	held = hs_slot_held(victim);
	evict(victim, "evicted to make room for another");
	log_debug("tunnel %s: a handshake made room for another (its source holds %u of %u slots)",
		  victim->t->conf.name, held, d->cfg->dtls.max_handshakes);
	return true;
}

/*
 * A ClientHello from a peer without a session (or a new one from a peer
 * that has one, or another one at an address whose handshake began without
 * a cookie: `unproven`). Stateless: unless it carries our cookie for this
 * address, answer with a HelloVerifyRequest and forget it.
 */
static void on_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data,
			    size_t len, struct session *old, struct session *unproven)
{
	struct daemon *d = t->d;
	gnutls_dtls_prestate_st prestate;
	struct cookie_dest dest = { t, from };
	struct session *s;
	bool resuming;
	int r;

	if (shared_cache_hold(t, from, data, len))	/* its session may be in Redis: asked first */
		return;
	memset(&prestate, 0, sizeof(prestate));
	/* Not for an address that has a session (a forged hello would hijack
	 * its next handshake), nor when slots run short (spoofed hellos naming a
	 * sniffed session ID could fill them): then the cookie decides. */
	resuming = !old && !unproven && d->n_handshaking < d->cfg->dtls.max_handshakes / 2 &&
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
	if (!ratelimit_take(t->hs_rate, from, daemon_now_ms(d))) {
		d->stats.dropped_limit++;
		meter_refused(t, from, PSKTUN_FAIL_too_many_handshakes, "over handshake_rate from this address");
		return;
	}
	if (unproven)	/* the address's owner: whoever began there without a cookie yields */
		evict(unproven, "the address's owner began a handshake");
	if (slots_full(d) && (!make_room(d, from) || slots_full(d))) {
		d->stats.dropped_limit++;
		meter_refused(t, from, PSKTUN_FAIL_too_many_handshakes,
			      d->n_sessions >= d->cfg->dtls.max_sessions ? "max_sessions reached" :
			      "max_handshakes in progress");
		return;
	}
	s = session_new(t, "", 0);
	if (!s) {
		d->stats.dropped_limit++;
		return;
	}
	memcpy(&s->peer, from, psktun_addr_len(from));
	s->slot.proven = !resuming;
	if (resuming)
		memcpy(s->slot.random, data + DTLS_CLIENT_HELLO_RANDOM, sizeof(s->slot.random));
	if (hs_slot_take(d, s) < 0) {
		d->stats.dropped_limit++;
		meter_refused(t, from, PSKTUN_FAIL_too_many_handshakes, "no handshake slot for this address");
		session_close(s, CLOSE_HANDSHAKE);
		return;
	}
	/* A retransmission of a ClientHello whose handshake failed gets the same
	 * answer, but is not another failure. */
	memcpy(s->hello_random, data + DTLS_CLIENT_HELLO_RANDOM, sizeof(s->hello_random));
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
	db_attach(s);
	session_handshake_begin(s);
	/* The verified ClientHello is the first datagram GnuTLS reads. */
	hs_slot_rx(s, len);
	session_on_record(s, data, len);
}

/* A datagram for session s from its peer's address. */
static void to_session(struct session *s, const uint8_t *data, size_t len)
{
	hs_slot_rx(s, len);
	session_on_record(s, data, len);
}

/* A datagram of whole records from `from`, whose session is s (or NULL). */
static void dispatch(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t nread,
		     struct session *s)
{
	struct daemon *d = t->d;

	if (!s) {
		if (dtls_is_client_hello(data, nread)) {
			on_client_hello(t, from, data, nread, NULL, NULL);
			return;
		}
		d->stats.dropped_unknown++;
		meter_unknown_seen(t, UNKNOWN_SOURCE, "", 0, from, "no session with this address");
		/* a record of a session: application data, or the gateway's probe (heartbeat) */
		if ((data[0] == DTLS_CT_APPLICATION_DATA || data[0] == DTLS_CT_HEARTBEAT) &&
		    dtls_record_epoch(data) > 0 &&
		    nread >= DTLS_PLAIN_ALERT_LEN)
			lost_session_alert(t, from);
		return;
	}
	if (s->replaced_by) {
		/* A new handshake runs beside the old session: handshake
		 * traffic goes to it, records of the old epoch to the old. */
		if (data[0] == DTLS_CT_HANDSHAKE || data[0] == DTLS_CT_CCS || dtls_record_epoch(data) == 0) {
			to_session(s->replaced_by, data, nread);
			return;
		}
	} else if (s->state == SESSION_ESTABLISHED && dtls_is_client_hello(data, nread)) {
		on_client_hello(t, from, data, nread, s, NULL);
		return;
	} else if (s->state == SESSION_HANDSHAKING && !s->slot.proven && dtls_is_client_hello(data, nread) &&
		   memcmp(data + DTLS_CLIENT_HELLO_RANDOM, s->slot.random, sizeof(s->slot.random))) {
		/* Not the hello that began this handshake without a cookie, sent
		 * again: perhaps the address's real owner. The cookie decides. */
		on_client_hello(t, from, data, nread, NULL, s);
		return;
	}
	to_session(s, data, nread);
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
	if ((flags & UV_UDP_PARTIAL) || nread < DTLS_RECORD_HDR) {
		d->stats.dropped_malformed++;
		return;
	}
	s = peer_find(t, from);
	/* Nothing reaches GnuTLS (a ClientHello its cookie check, a record its
	 * session) or is answered unless it starts with a whole record. */
	if (dtls_record_len(data, nread) < 0) {
		if (s)
			d->stats.dropped_malformed++;
		else
			d->stats.dropped_unknown++;
		return;
	}
	dispatch(t, from, data, nread, s);
}

/* A ClientHello the shared cache held (cache.c) while it looked its session up: as on_peer would. */
void terminator_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len)
{
	dispatch(t, from, data, len, peer_find(t, from));
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
	tunnel_apply_verdict(t, s, TUNNEL_UPLINK, v, reason, from, data, len);	/* a REPLY: back to the backend */
}

static void on_backend(struct session *s, ssize_t nread, uint8_t *data, bool truncated)
{
	from_backend(s->t, s, data, nread, (struct sockaddr *)&s->t->connect_addr, truncated);
}

/*
 * The shared socket is bound, not connected, so anyone who can reach its
 * port may write to it, and what arrives there names the session it goes
 * into (MQTT-SN: the Wireless Node Id). Only the configured backend speaks
 * there; anything else is refused before a plugin reads it, as a session's
 * own (connected) socket would never have received it.
 */
static void on_shared_backend(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			      const struct sockaddr *from, unsigned flags)
{
	struct tunnel *t = h->data;

	if (!from || nread < 0)
		return;
	if (!t->connect_resolved ||
	    !psktun_addr_equal(from, (struct sockaddr *)&t->connect_addr, true)) {
		t->d->stats.plain_in++;
		t->d->stats.dropped_policy++;
		return;
	}
	from_backend(t, NULL, (uint8_t *)buf->base, nread, from, flags & UV_UDP_PARTIAL);
}

/* A reload: the tunnel this one replaces may hold the socket already; share it. */
static struct tunnel *retiring_shared_on(struct daemon *d, const struct sockaddr *local)
{
	for (struct tunnel *o = d->tunnels; o; o = o->next)
		if (o->retiring && o->shared_plain && !o->shared_handed &&
		    psktun_addr_equal((const struct sockaddr *)&o->shared_addr, local, true))
			return o;
	return NULL;
}

static void live(struct tunnel *t);

static int use_shared_plain(struct tunnel *t, const struct sockaddr *local)
{
	struct tunnel *old = retiring_shared_on(t->d, local);
	uv_os_fd_t fd;
	uv_udp_t *u;
	int r, nfd;

	if (t->shared_plain)
		return -EALREADY;
	u = malloc(sizeof(*u));
	if (!u)
		return -ENOMEM;
	uv_udp_init(t->d->loop, u);
	u->data = t;
	t->shared_plain = u;
	memcpy(&t->shared_addr, local, psktun_addr_len(local));
	if (old) {
		r = uv_fileno((uv_handle_t *)old->shared_plain, &fd);
		nfd = r < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
		r = nfd < 0 ? UV_EBADF : uv_udp_open(u, nfd);
		if (r < 0 && nfd >= 0)
			close(nfd);
	} else {
		r = uv_udp_bind(u, local, 0);
	}
	if (r < 0) {
		log_err("tunnel %s: cannot use a shared backend socket: %s", t->conf.name, uv_strerror(r));
		return -EIO;
	}
	if (old)
		old->shared_handed = true;
	if (t->started)
		live(t);
	return 0;
}

/* The tunnel goes live (tunnel_start): the shared backend socket too, if a plugin asked for one. */
static void live(struct tunnel *t)
{
	int r;

	if (!t->shared_plain)
		return;
	r = uv_udp_recv_start(t->shared_plain, tunnel_alloc_rx, on_shared_backend);

	if (r < 0)
		log_err("tunnel %s: cannot receive from the backend: %s", t->conf.name, uv_strerror(r));
}

static int backend_open(struct session *s)
{
	return session_socket_open(s, on_backend, "the backend");
}

static void established(struct session *s)
{
	struct tunnel *t = s->t;
	struct daemon *d = t->d;
	gnutls_datum_t user = { NULL, 0 };
	const struct psktun_key *key;
	struct session *other;

	/* The client's Finished covers our random: it received what we sent. */
	s->slot.proven = true;
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

static int start(struct tunnel *t, const struct psktun_config *cfg)
{
	t->hs_rate = malloc(sizeof(*t->hs_rate));
	if (!t->hs_rate)
		return -ENOMEM;
	ratelimit_init(t->hs_rate, cfg->dtls.handshake_rate, cfg->dtls.handshake_burst);
	t->alert_rate = malloc(sizeof(*t->alert_rate));
	if (!t->alert_rate)
		return -ENOMEM;
	/* An alert is smaller than the record that provokes it: generous. */
	ratelimit_init(t->alert_rate, 100, 200);
	t->on_recv = on_peer;	/* from tunnel_start on */
	return 0;
}

/* A failed handshake ends its session: the client starts another. */
static void handshake_failed(struct session *s, enum psktun_failure why, const char *detail)
{
	meter_handshake_failed(s, why, detail, NULL);
	session_close(s, CLOSE_HANDSHAKE);
}

const struct role_ops terminator_ops = {
	.name = "terminator",
	.up_where = "from peer",
	.dtls_side = EGRESS_ACCEPT,
	.start = start,
	.established = established,
	.handshake_failed = handshake_failed,
	.session_closing = plugin_session_close,
	.deliver = tunnel_deliver,
	.use_shared_plain = use_shared_plain,
	.live = live,
};

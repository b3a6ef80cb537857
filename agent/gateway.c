/* gateway: plaintext from meters on the LAN into each meter's own DTLS session to the cloud. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "addr.h"
#include "backoff.h"
#include "daemon.h"
#include "dtls.h"
#include "gateway.h"
#include "log.h"
#include "meters.h"
#include "pluginhost.h"
#include "record.h"
#include "role.h"
#include "session.h"
#include "tunnel.h"

/* A LAN source bound to an identity (gateway): configured or learned via a plugin. */
struct binding {
	struct htab_node node;
	struct htab_node pin_node;	/* a `meters` entry: in tunnel.pinned, by identity */
	struct sockaddr_storage addr;
	bool with_port;
	bool learned;
	struct binding *next_learned;
	char identity[PSKTUN_IDENTITY_MAX + 1];
	size_t identity_len;
};

static struct binding *binding_find(struct tunnel *t, const struct sockaddr *from)
{
	for (int with_port = 1; with_port >= 0; with_port--) {
		uint64_t h = psktun_addr_hash(from, with_port);

		for (struct htab_node *n = htab_first(&t->bindings, h); n; n = htab_next(n, h)) {
			struct binding *b = container_of(n, struct binding, node);

			if (b->with_port == with_port &&
			    psktun_addr_equal((struct sockaddr *)&b->addr, from, with_port))
				return b;
		}
	}
	return NULL;
}

static struct binding *binding_add(struct tunnel *t, const struct sockaddr *addr, bool with_port,
				   const char *identity, size_t len)
{
	struct binding *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	memcpy(&b->addr, addr, psktun_addr_len(addr));
	b->with_port = with_port;
	memcpy(b->identity, identity, len);
	b->identity_len = len;
	htab_insert(&t->bindings, &b->node, psktun_addr_hash(addr, with_port));
	return b;
}

/* Is this identity pinned by a `meters` entry (to some source)? */
static bool identity_pinned(struct tunnel *t, const char *id, size_t len)
{
	uint64_t h = identity_hash(id, len);

	for (struct htab_node *n = htab_first(&t->pinned, h); n; n = htab_next(n, h)) {
		struct binding *b = container_of(n, struct binding, pin_node);

		if (b->identity_len == len && !memcmp(b->identity, id, len))
			return true;
	}
	return false;
}

static void binding_remove_learned(struct tunnel *t, struct binding *b)
{
	for (struct binding **pp = &t->learned; *pp; pp = &(*pp)->next_learned) {
		if (*pp == b) {
			*pp = b->next_learned;
			t->n_learned--;
			break;
		}
	}
	htab_remove(&t->bindings, &b->node);
	free(b);
}

/*
 * A plugin named the meter behind an unbound source. One learned source per
 * identity (the newest), so the table is bounded by the key file, not by
 * what arrives on the LAN.
 */
static void binding_learn(struct tunnel *t, const struct sockaddr *from, const char *id, size_t len)
{
	struct binding *b;

	for (b = t->learned; b; b = b->next_learned)
		if (b->identity_len == len && !memcmp(b->identity, id, len))
			break;
	if (b)
		binding_remove_learned(t, b);
	b = binding_add(t, from, true, id, len);
	if (!b)
		return;
	b->learned = true;
	b->next_learned = t->learned;
	t->learned = b;
	t->n_learned++;
}

static void bindings_clear(struct tunnel *t, bool keep_learned)
{
	for (size_t i = 0; i <= t->bindings.mask; i++) {
		struct htab_node *n = t->bindings.bucket[i], *next;

		for (; n; n = next) {
			struct binding *b = container_of(n, struct binding, node);

			next = n->next;
			if (keep_learned && b->learned &&
			    psktun_keys_find(t->d->keys, b->identity, b->identity_len))
				continue;
			if (b->learned) {
				binding_remove_learned(t, b);
			} else {
				htab_remove(&t->bindings, &b->node);
				htab_remove(&t->pinned, &b->pin_node);
				free(b);
			}
		}
	}
}

int gateway_bindings_load(struct tunnel *t, const struct psktun_config *cfg)
{
	struct binding *b, *next;

	bindings_clear(t, true);
	for (size_t i = 0; i < cfg->n_meters; i++) {
		const struct psktun_conf_meter *m = &cfg->meters[i];
		size_t len = strlen(m->identity);

		b = binding_add(t, (const struct sockaddr *)&m->addr, m->has_port, m->identity, len);
		if (!b)
			return -ENOMEM;
		htab_insert(&t->pinned, &b->pin_node, identity_hash(m->identity, len));
	}
	/* A source learned for an identity that is pinned now speaks for it no more. */
	for (b = t->learned; b; b = next) {
		next = b->next_learned;
		if (identity_pinned(t, b->identity, b->identity_len))
			binding_remove_learned(t, b);
	}
	return 0;
}

/*
 * A plaintext (epoch 0) alert on an established session: the server lost it
 * (see terminator.c). It is unauthenticated: believed only while an uplink
 * record waits for its answer, which is when a server that lost the session
 * sends it. Any other time it is a forgery, and GnuTLS discards it.
 */
static bool lost_by_cloud(const struct session *s, const uint8_t *p, size_t len)
{
	return s->state == SESSION_ESTABLISHED && s->awaiting_downlink && dtls_is_plain_alert(p, len);
}

static void on_cloud(struct session *s, ssize_t nread, uint8_t *data, bool truncated)
{
	if (nread == 0)
		return;
	if (nread < 0) {
		/* ICMP port unreachable on the connected socket: nobody listens
		 * there now. Like a plaintext alert it is unauthenticated, and
		 * anyone who knows the socket's addresses can forge one: believed
		 * only while an uplink record waits for its answer, which is
		 * when a dead server's host sends it (lost_by_cloud). */
		bool believed = s->state == SESSION_ESTABLISHED && s->awaiting_downlink;

		log_info("tunnel %s: session %s: %s from the cloud%s", s->t->conf.name, SESSION_ID(s),
			 strerror(-nread), believed || s->state != SESSION_ESTABLISHED ? ""
			 : " (ignored: no uplink waits for an answer)");
		if (s->state == SESSION_HANDSHAKING)
			s->unreachable = true;
		if (believed) {
			session_rehandshake(s);
			session_replay_sent(s);
		}
		return;
	}
	if (truncated) {
		s->t->d->stats.dropped_malformed++;
		return;
	}
	if (lost_by_cloud(s, data, nread)) {
		log_info("tunnel %s: session %s: the cloud no longer knows this session", s->t->conf.name,
			 SESSION_ID(s));
		session_rehandshake(s);
		session_replay_sent(s);	/* what went on the dead path goes again */
		return;
	}
	session_on_record(s, data, nread);
}

int gateway_session_connect(struct session *s)
{
	return session_socket_open(s, on_cloud, "the DTLS server");
}

/* Its turn to shake hands (session.c's queue): resolve `connect` if need be,
 * then a fresh socket and a GnuTLS client with the meter's key. */
static void handshake_start(struct session *s)
{
	struct tunnel *t = s->t;
	const struct psktun_key *key;

	if (!t->connect_resolved) {
		session_set_state(s, SESSION_RESOLVING);
		if (tunnel_resolve(t) < 0) {	/* no answer will come: back off and try again */
			session_handshake_begin(s);
			session_handshake_failed(s, PSKTUN_FAIL_resolve, NULL);
		}
		return;
	}
	key = psktun_keys_find(t->d->keys, s->identity, s->identity_len);
	if (!key) {
		log_warn("tunnel %s: %s is no longer in the key file", t->conf.name, SESSION_ID(s));
		session_close(s, CLOSE_RELOAD);
		return;
	}
	dtls_key_digest(key, s->key_digest);
	session_handshake_begin(s);
	if (gateway_session_connect(s) < 0 || dtls_session_client(s, key) < 0) {
		session_handshake_failed(s, PSKTUN_FAIL_error, "no socket");
		return;
	}
	log_info("tunnel %s: handshake for %s to %s:%s", t->conf.name, SESSION_ID(s),
		 t->connect_host, t->connect_port);
	session_handshake_step(s);
}

/* Failed: back off (psktun_backoff_ms, growing with each failure) and try again. */
static void handshake_failed(struct session *s, enum psktun_failure why, const char *detail)
{
	uint32_t rnd, wait;
	char tail[64];

	s->failures++;
	daemon_rand(&rnd, sizeof(rnd));
	wait = psktun_backoff_ms(s->failures, rnd);
	snprintf(tail, sizeof(tail), "; retry %u in %u ms", s->failures, wait);
	meter_handshake_failed(s, why, detail, tail);
	/* A DNS answer may be stale after a failure: resolve again next time. */
	s->t->connect_resolved = false;
	session_back_off(s, wait);
}

static void established(struct session *s)
{
	dtls_save_resumption(s);
}

/*
 * Which meter sent this? A `meters` source, else a source a plugin bound
 * earlier, else the plugin. An identity pinned by a `meters` entry is spoken
 * for by its own source only: when the plugin finds it claimed from another,
 * -EACCES, and nothing is bound.
 */
static int meter_identify(struct tunnel *t, const struct sockaddr *from, const uint8_t *buf,
			  size_t len, char *id, size_t *id_len)
{
	struct binding *b = binding_find(t, from);
	int r;

	if (b) {
		memcpy(id, b->identity, b->identity_len);
		*id_len = b->identity_len;
		return 0;
	}
	if (!t->plugin)
		return -ENOENT;
	r = plugin_identify(t, from, buf, len, id, id_len);
	if (r < 0)
		return r;
	if (!psktun_keys_find(t->d->keys, id, *id_len))
		return -ENOKEY;		/* id says which */
	if (identity_pinned(t, id, *id_len))
		return -EACCES;
	binding_learn(t, from, id, *id_len);
	return 0;
}

static void on_meter(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
		     unsigned flags)
{
	struct tunnel *t = h->data;
	struct daemon *d = t->d;
	uint8_t *data = (uint8_t *)buf->base;
	char id[PSKTUN_IDENTITY_MAX + 1];
	size_t id_len = PSKTUN_IDENTITY_MAX, len = nread;
	enum psktun_reason reason = PSKTUN_REASON_NONE;
	struct session *s, *target = NULL;
	enum psktun_verdict v;
	bool created = false;
	int r;

	if (nread < 0 || !from)
		return;
	d->stats.plain_in++;
	if (nread == 0 || (flags & UV_UDP_PARTIAL)) {
		d->stats.dropped_malformed++;
		return;
	}
	r = meter_identify(t, from, data, len, id, &id_len);
	if (r == -EACCES) {
		char where[PSKTUN_ADDRSTRLEN];

		log_info("tunnel %s: %s claims identity %.*s, which meters pins to another source: refused",
			 t->conf.name, psktun_addr_format(from, where, sizeof(where)), (int)id_len, id);
		d->stats.dropped_policy++;
		if (plugin_refusal(t, from, data, &len, PSKTUN_DGRAM_MAX))
			tunnel_apply_verdict(t, NULL, TUNNEL_UPLINK, PSKTUN_REPLY, PSKTUN_REASON_NONE, from,
					     data, len);
		return;
	}
	if (r < 0) {
		/* Nobody we know; the plugin may still answer on the LAN (SEARCHGW). */
		if ((r == -ENOENT || r == -ENOKEY) && t->plugin &&
		    plugin_on_plain(t, NULL, from, data, &len, PSKTUN_DGRAM_MAX, &reason,
				    &target) == PSKTUN_REPLY) {
			tunnel_apply_verdict(t, NULL, TUNNEL_UPLINK, PSKTUN_REPLY, reason, from, data, len);
		} else if (r == -EBADMSG) {
			d->stats.dropped_malformed++;
		} else if (r == -ENOKEY) {
			d->stats.dropped_unknown++;
			meter_unknown_seen(t, UNKNOWN_IDENTITY, id, id_len, from, " (not in the key file)");
		} else {
			d->stats.dropped_unknown++;
			meter_unknown_seen(t, UNKNOWN_SOURCE, "", 0, from, t->plugin ?
					   "unknown source (no meters entry, and the datagram names no identity)" :
					   "unknown source (no meters entry)");
		}
		return;
	}
	s = session_find_identity(t, id, id_len);
	if (!s) {
		created = true;
		if (d->n_sessions >= d->cfg->dtls.max_sessions) {
			d->stats.dropped_limit++;
			return;
		}
		s = session_new(t, id, id_len);
		if (!s) {
			d->stats.dropped_limit++;
			return;
		}
		plugin_session_open(s);
	}
	memcpy(&s->peer, from, psktun_addr_len(from));	/* replies go to the latest source */
	s->plain_in++;
	s->plain_in_bytes += nread;
	session_touch(s);
	v = plugin_on_plain(t, s, from, data, &len, PSKTUN_DGRAM_MAX, &reason, &target);
	tunnel_apply_verdict(t, s, TUNNEL_UPLINK, v, reason, from, data, len);
	/* Answered on the LAN or dropped: no handshake for nothing. */
	if (created && s->state == SESSION_NEW && !s->queue.n && !s->waiting)
		session_close(s, CLOSE_UNUSED);
}

static int start(struct tunnel *t, const struct psktun_config *cfg)
{
	int r = gateway_bindings_load(t, cfg);

	if (r < 0)
		return r;
	/* Plugins may answer or advertise to a LAN broadcast address. */
	uv_udp_set_broadcast(&t->sock, 1);
	t->on_recv = on_meter;	/* from tunnel_start on */
	return 0;
}

static void stop(struct tunnel *t)
{
	if (t->bindings.bucket)
		bindings_clear(t, false);
}

const struct role_ops gateway_ops = {
	.name = "gateway",
	.up_where = "to cloud",
	.dtls_client = true,
	.dtls_side = EGRESS_CONNECT,
	.keeps_uplink = true,
	.rehandshakes = true,
	.start = start,
	.stop = stop,
	.handshake_start = handshake_start,
	.established = established,
	.handshake_failed = handshake_failed,
	.session_closing = plugin_session_close,
	.deliver = tunnel_deliver,
};

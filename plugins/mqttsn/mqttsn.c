/* mqttsn: the MQTT-SN v1.2 plugin: binds ClientIds to PSK identities, answers discovery, forwards and watches for silence. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psktun/plugin.h"
#include "parse.h"

/*
 * Behaviour beyond the letter of issue 3, chosen as a user would expect:
 * - Forwarder Encapsulation is this plugin's own business: one arriving
 *   from a meter (gateway) or from the tunnel (terminator) is refused
 *   (dropped_policy), since its inner CONNECT would bypass the ClientId
 *   check and a forged Node Id would speak for another meter.
 * - A PINGREQ carrying a ClientId (a sleeping client waking up) is held to
 *   the same rule as CONNECT; it has no refusal message, so a mismatch is
 *   dropped (dropped_policy). At the gateway it also names the meter in
 *   identify(), so a meter that wakes on a new source port is found.
 * - ADVERTISE and GWINFO from the LAN are discovery traffic and stay there
 *   (dropped, no counter).
 * - DISCONNECT without a duration (or with duration 0, as Paho reads it)
 *   is acknowledged to the meter locally with a DISCONNECT, because the
 *   cloud's own acknowledgement cannot come back over the session that
 *   closes right after forwarding; without it the meter would retry, and
 *   every retry would cost a handshake.
 * - Keep-alive and sleep durations raise the idle timeout at both roles.
 * - Options that mean nothing in the tunnel's role are refused like
 *   unknown ones. Addresses are numeric ("192.168.10.255:1883",
 *   "[ff02::1]:1883"): no DNS lookups from init.
 */

#define GATEWAY_ID_DEFAULT	1
#define ANSWER_TIMEOUT_DEFAULT_MS 30000
#define ANSWER_TIMEOUT_MAX_MS	86400000UL
#define PENDING_MAX		8	/* awaited answers kept per session */

struct tunnel {
	const struct psktun_host *host;
	struct psktun_tunnel *t;
	enum psktun_role role;
	uint8_t gateway_id;
	uint16_t advertise_s;		/* 0: no ADVERTISE */
	struct sockaddr_storage advertise_to;
	bool forwarder;			/* terminator: talk as one forwarder */
	uint32_t answer_timeout_ms;	/* 0: no silence detection */
};

/* A request toward the cloud whose answer is awaited. */
struct pending {
	bool used;
	uint8_t request;		/* CONNECT, PINGREQ, SUBSCRIBE, PUBLISH */
	uint16_t msg_id;		/* SUBSCRIBE, PUBLISH */
	uint64_t deadline;		/* host->now_ms() */
};

/*
 * Per-session state (gateway with silence detection only). Bounded: when
 * all slots wait, a further request is not tracked; the older ones expire
 * first anyway, so silence is still noticed as early.
 */
struct session {
	struct pending pending[PENDING_MAX];
	uint64_t armed;			/* deadline the session timer runs to; 0: none */
};

/* ceil(1.5 * seconds); fits, since seconds <= 65535. */
static uint32_t idle_for(uint16_t seconds)
{
	return ((uint32_t)seconds * 3 + 1) / 2;
}

static enum psktun_verdict drop(struct psktun_dgram *ctx, enum psktun_reason why)
{
	ctx->reason = why;
	return PSKTUN_DROP;
}

static bool is_identity(const struct tunnel *tun, struct psktun_session *s,
			const uint8_t *id, size_t len)
{
	size_t ilen = 0;
	const char *ident = tun->host->identity(s, &ilen);

	return ident && ilen == len && memcmp(ident, id, len) == 0;
}

/* Answer the datagram in buf with a CONNACK "rejected: not supported",
 * the only refusal CONNECT has (section 5.3.10). */
static enum psktun_verdict connack_refusal(struct psktun_dgram *ctx, uint8_t *buf,
					   size_t *len, size_t cap)
{
	int n = mqttsn_write_connack(buf, cap, MQTTSN_RC_NOT_SUPPORTED);

	if (n < 0)
		return drop(ctx, PSKTUN_REASON_POLICY);
	*len = (size_t)n;
	ctx->reason = PSKTUN_REASON_POLICY;
	return PSKTUN_REPLY;
}

static enum psktun_verdict refuse_connect(const struct tunnel *tun, struct psktun_dgram *ctx,
					  const struct mqttsn_msg *m, uint8_t *buf,
					  size_t *len, size_t cap)
{
	tun->host->log(tun->t, PSKTUN_LOG_NOTICE,
		       "CONNECT with ClientId '%.*s' refused: not the session's identity",
		       (int)m->client_id_len, (const char *)m->client_id);
	return connack_refusal(ctx, buf, len, cap);
}

/* CONNECT keep-alive and a sleeping DISCONNECT's duration. */
static void raise_idle(const struct tunnel *tun, struct psktun_session *s, uint16_t seconds)
{
	if (seconds > 0)
		tun->host->set_idle_timeout(s, idle_for(seconds));
}

/* Checks common to both roles on what a client sends toward the cloud.
 * Returns true with *verdict set when the datagram is settled here. */
static bool client_policy(const struct tunnel *tun, struct psktun_dgram *ctx,
			  const struct mqttsn_msg *m, uint8_t *buf, size_t *len,
			  size_t cap, enum psktun_verdict *verdict)
{
	switch (m->type) {	/* a wire byte, not every type: not an enum switch */
	case MQTTSN_ENCAPSULATED:
		tun->host->log(tun->t, PSKTUN_LOG_INFO,
			       "Forwarder Encapsulation from a client refused");
		*verdict = drop(ctx, PSKTUN_REASON_POLICY);
		return true;
	case MQTTSN_CONNECT:
		if (!is_identity(tun, ctx->session, m->client_id, m->client_id_len)) {
			*verdict = refuse_connect(tun, ctx, m, buf, len, cap);
			return true;
		}
		raise_idle(tun, ctx->session, m->duration);
		return false;
	case MQTTSN_PINGREQ:
		if (m->client_id &&
		    !is_identity(tun, ctx->session, m->client_id, m->client_id_len)) {
			tun->host->log(tun->t, PSKTUN_LOG_NOTICE,
				       "PINGREQ with ClientId '%.*s' dropped: not the session's identity",
				       (int)m->client_id_len, (const char *)m->client_id);
			*verdict = drop(ctx, PSKTUN_REASON_POLICY);
			return true;
		}
		return false;
	case MQTTSN_DISCONNECT:
		if (m->has_duration)
			raise_idle(tun, ctx->session, m->duration);
		return false;
	default:
		return false;
	}
}

/* --- silence detection (gateway) --- */

static void pending_add(const struct tunnel *tun, struct psktun_session *s,
			struct session *ss, uint8_t request, uint16_t msg_id)
{
	struct pending *free_slot = NULL;
	uint64_t now;

	if (!ss || tun->answer_timeout_ms == 0)
		return;
	for (size_t i = 0; i < PENDING_MAX; i++) {
		struct pending *p = &ss->pending[i];

		if (!p->used) {
			if (!free_slot)
				free_slot = p;
			continue;
		}
		/* A retransmission (DUP) keeps the first deadline. */
		if (p->request == request && p->msg_id == msg_id)
			return;
	}
	if (!free_slot)
		return;
	now = tun->host->now_ms(tun->t);
	free_slot->used = true;
	free_slot->request = request;
	free_slot->msg_id = msg_id;
	free_slot->deadline = now + tun->answer_timeout_ms;
	/* Every deadline is now + the same timeout: an armed timer is
	 * already due no later than this one. */
	if (ss->armed == 0 && tun->host->session_timer(s, tun->answer_timeout_ms) == 0)
		ss->armed = free_slot->deadline;
}

static bool answers(const struct pending *p, const struct mqttsn_msg *m)
{
	switch (m->type) {	/* a wire byte, not every type: not an enum switch */
	case MQTTSN_CONNACK:
		return p->request == MQTTSN_CONNECT;
	case MQTTSN_PINGRESP:
		return p->request == MQTTSN_PINGREQ;
	case MQTTSN_SUBACK:
		return p->request == MQTTSN_SUBSCRIBE && p->msg_id == m->msg_id;
	case MQTTSN_PUBACK:	/* QoS 1, or any QoS refused with a return code */
	case MQTTSN_PUBREC:	/* QoS 2 */
		return p->request == MQTTSN_PUBLISH && p->msg_id == m->msg_id;
	default:
		return false;
	}
}

/* An answer from the cloud; the timer is left to find nothing due. */
static void pending_answer(struct session *ss, const struct mqttsn_msg *m)
{
	if (!ss)
		return;
	for (size_t i = 0; i < PENDING_MAX; i++)
		if (ss->pending[i].used && answers(&ss->pending[i], m))
			ss->pending[i].used = false;
}

static void track_request(const struct tunnel *tun, struct psktun_dgram *ctx,
			  const struct mqttsn_msg *m)
{
	struct session *ss = ctx->session_data;

	switch (m->type) {	/* a wire byte, not every type: not an enum switch */
	case MQTTSN_CONNECT:
	case MQTTSN_PINGREQ:
		pending_add(tun, ctx->session, ss, m->type, 0);
		break;
	case MQTTSN_SUBSCRIBE:
		pending_add(tun, ctx->session, ss, m->type, m->msg_id);
		break;
	case MQTTSN_PUBLISH:
		if (m->flags.qos == 1 || m->flags.qos == 2)
			pending_add(tun, ctx->session, ss, m->type, m->msg_id);
		break;
	default:
		break;
	}
}

static void on_session_timer(void *tunnel_data, struct psktun_session *s, void *session_data)
{
	struct tunnel *tun = tunnel_data;
	struct session *ss = session_data;
	uint64_t now, next = UINT64_MAX;
	bool silent = false;

	if (!tun || !ss)
		return;
	ss->armed = 0;
	now = tun->host->now_ms(tun->t);
	for (size_t i = 0; i < PENDING_MAX; i++) {
		struct pending *p = &ss->pending[i];

		if (!p->used)
			continue;
		if (p->deadline <= now) {
			p->used = false;
			silent = true;
		} else if (p->deadline < next) {
			next = p->deadline;
		}
	}
	if (silent) {
		tun->host->log(tun->t, PSKTUN_LOG_INFO,
			       "no answer from the cloud within %u ms",
			       (unsigned)tun->answer_timeout_ms);
		tun->host->report_silent(s);
	}
	/* next - now <= answer_timeout_ms, which fits in 32 bits. */
	if (next != UINT64_MAX && tun->host->session_timer(s, (uint32_t)(next - now)) == 0)
		ss->armed = next;
}

/* --- datagram callbacks --- */

static enum psktun_verdict reply_gwinfo(const struct tunnel *tun, struct psktun_dgram *ctx,
					uint8_t *buf, size_t *len, size_t cap)
{
	int n = mqttsn_write_gwinfo(buf, cap, tun->gateway_id, NULL, 0);

	if (n < 0)
		return drop(ctx, PSKTUN_REASON_NONE);
	*len = (size_t)n;
	ctx->reason = PSKTUN_REASON_NONE;
	return PSKTUN_REPLY;
}

/* Gateway: a datagram from a meter. */
static enum psktun_verdict gateway_plain(struct tunnel *tun, struct psktun_dgram *ctx,
					 uint8_t *buf, size_t *len, size_t cap)
{
	enum psktun_verdict verdict;
	struct mqttsn_msg m;
	int n;

	if (mqttsn_parse(buf, *len, &m) < 0)
		return drop(ctx, PSKTUN_REASON_MALFORMED);
	/* The daemon refuses the ClientId of a CONNECT (or PINGREQ) from
	 * this source: a CONNECT has its refusal, a PINGREQ none. */
	if (ctx->flags & PSKTUN_DGRAM_IDENTITY_REFUSED) {
		if (m.type == MQTTSN_CONNECT)
			return connack_refusal(ctx, buf, len, cap);
		return drop(ctx, PSKTUN_REASON_POLICY);
	}
	if (m.type == MQTTSN_SEARCHGW)
		return reply_gwinfo(tun, ctx, buf, len, cap);
	/* No session: the host asks before it knows the meter (only a
	 * SEARCHGW can be answered then). */
	if (!ctx->session)
		return drop(ctx, PSKTUN_REASON_UNKNOWN);
	if (m.type == MQTTSN_ADVERTISE || m.type == MQTTSN_GWINFO)
		return drop(ctx, PSKTUN_REASON_NONE);
	if (client_policy(tun, ctx, &m, buf, len, cap, &verdict))
		return verdict;
	track_request(tun, ctx, &m);
	if (m.type == MQTTSN_DISCONNECT && (!m.has_duration || m.duration == 0)) {
		uint8_t ack[2];

		n = mqttsn_write_disconnect(ack, sizeof(ack));
		if (n > 0)
			tun->host->send_plain(ctx->session, ack, (size_t)n);
		return PSKTUN_CLOSE;
	}
	return PSKTUN_FORWARD;
}

/* Terminator, forwarder mode: a backend reply on the shared socket. */
static enum psktun_verdict forwarder_unwrap(struct tunnel *tun, struct psktun_dgram *ctx,
					    uint8_t *buf, size_t *len)
{
	struct psktun_session *s;
	struct mqttsn_msg m;

	if (mqttsn_parse(buf, *len, &m) < 0)
		return drop(ctx, PSKTUN_REASON_MALFORMED);
	if (m.type != MQTTSN_ENCAPSULATED)
		return drop(ctx, PSKTUN_REASON_UNKNOWN);
	s = tun->host->find_session(tun->t, (const char *)m.node_id, m.node_id_len);
	if (!s) {
		tun->host->log(tun->t, PSKTUN_LOG_DEBUG,
			       "reply for node '%.*s' without a session dropped",
			       (int)m.node_id_len, (const char *)m.node_id);
		return drop(ctx, PSKTUN_REASON_UNKNOWN);
	}
	memmove(buf, m.inner, m.inner_len);
	*len = m.inner_len;
	ctx->target = s;
	return PSKTUN_FORWARD;
}

static enum psktun_verdict on_plain(struct psktun_dgram *ctx, uint8_t *buf, size_t *len, size_t cap)
{
	struct tunnel *tun = ctx->tunnel_data;
	struct mqttsn_msg m;

	if (tun->role == PSKTUN_ROLE_GATEWAY)
		return gateway_plain(tun, ctx, buf, len, cap);
	if (!ctx->session)
		return forwarder_unwrap(tun, ctx, buf, len);
	if (mqttsn_parse(buf, *len, &m) < 0)
		return drop(ctx, PSKTUN_REASON_MALFORMED);
	return PSKTUN_FORWARD;
}

/* Terminator: a datagram from the client side, on its way to the backend. */
static enum psktun_verdict terminator_tunnel(struct tunnel *tun, struct psktun_dgram *ctx,
					     uint8_t *buf, size_t *len, size_t cap)
{
	enum psktun_verdict verdict;
	struct mqttsn_msg m;
	const char *ident;
	size_t ilen = 0;
	int n;

	if (mqttsn_parse(buf, *len, &m) < 0)
		return drop(ctx, PSKTUN_REASON_MALFORMED);
	if (client_policy(tun, ctx, &m, buf, len, cap, &verdict))
		return verdict;
	if (!tun->forwarder)
		return PSKTUN_FORWARD;
	ident = tun->host->identity(ctx->session, &ilen);
	n = mqttsn_encap_wrap(buf, *len, cap, 0, (const uint8_t *)ident, ilen);
	if (n < 0) {
		tun->host->log(tun->t, PSKTUN_LOG_WARNING,
			       "cannot encapsulate for identity of %zu octets (1..%d)",
			       ilen, MQTTSN_NODEID_MAX);
		return drop(ctx, PSKTUN_REASON_POLICY);
	}
	*len = (size_t)n;
	return PSKTUN_FORWARD;
}

static enum psktun_verdict on_tunnel(struct psktun_dgram *ctx, uint8_t *buf, size_t *len, size_t cap)
{
	struct tunnel *tun = ctx->tunnel_data;
	struct mqttsn_msg m;

	if (tun->role == PSKTUN_ROLE_TERMINATOR)
		return terminator_tunnel(tun, ctx, buf, len, cap);
	if (mqttsn_parse(buf, *len, &m) < 0)
		return drop(ctx, PSKTUN_REASON_MALFORMED);
	pending_answer(ctx->session_data, &m);
	return PSKTUN_FORWARD;
}

static int identify(void *tunnel_data, const struct sockaddr *from,
		    const uint8_t *buf, size_t len, char *id, size_t *id_len)
{
	struct mqttsn_msg m;

	if (mqttsn_parse(buf, len, &m) < 0)
		return -EBADMSG;
	if (m.type != MQTTSN_CONNECT && m.type != MQTTSN_PINGREQ)
		return -ENOENT;
	if (!m.client_id || m.client_id_len > *id_len)
		return -ENOENT;
	memcpy(id, m.client_id, m.client_id_len);
	*id_len = m.client_id_len;
	return 0;
}

/* --- ADVERTISE (gateway) --- */

static void on_tunnel_timer(void *tunnel_data)
{
	struct tunnel *tun = tunnel_data;
	uint8_t msg[5];
	int n, rc;

	if (!tun || tun->advertise_s == 0)
		return;
	n = mqttsn_write_advertise(msg, sizeof(msg), tun->gateway_id, tun->advertise_s);
	if (n > 0) {
		rc = tun->host->send_plain_to(tun->t, (const struct sockaddr *)&tun->advertise_to,
					      msg, (size_t)n);
		if (rc < 0)
			tun->host->log(tun->t, PSKTUN_LOG_WARNING,
				       "ADVERTISE not sent: %s", strerror(-rc));
	}
	tun->host->tunnel_timer(tun->t, (uint32_t)tun->advertise_s * 1000);
}

/* --- options --- */

static int parse_uint(const char *v, unsigned long max, unsigned long *out)
{
	unsigned long x = 0;

	if (!v || !*v)
		return -EINVAL;
	for (const char *p = v; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		x = x * 10 + (unsigned long)(*p - '0');
		if (x > max)
			return -EINVAL;
	}
	*out = x;
	return 0;
}

/* Numeric "a.b.c.d:port" or "[v6]:port"; port 1..65535. */
static int parse_addr(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *hs = s;
	unsigned long port;
	size_t hl;

	if (!s)
		return -EINVAL;
	if (*s == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hl = (size_t)(end - hs);
		colon = end + 1;
	} else {
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	if (parse_uint(colon + 1, 65535, &port) < 0 || port == 0)
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	memset(out, 0, sizeof(*out));
	if (*s == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)out;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return -EINVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
	}
	return 0;
}

/* Where apply_options writes what is wrong: check_options' buffer. */
struct option_err {
	char *buf;
	size_t len;
};

static int bad_option(struct option_err *e, const struct psktun_option *o, const char *why)
{
	snprintf(e->buf, e->len, "option %.64s = \"%.64s\": %s",
		 o->key, o->value ? o->value : "", why);
	return -EINVAL;
}

/* The one parser for options: check_options and init both use it. */
static int apply_options(struct tunnel *tun, const struct psktun_option *opts, size_t n_opts,
			 const char **forwarder, struct option_err *e)
{
	bool gateway = tun->role == PSKTUN_ROLE_GATEWAY;
	bool have_to = false;
	unsigned long v;

	for (size_t i = 0; i < n_opts; i++) {
		const struct psktun_option *o = &opts[i];

		if (!o->key) {
			snprintf(e->buf, e->len, "option without a name");
			return -EINVAL;
		}
		if (!strcmp(o->key, "gateway_id")) {
			if (!gateway)
				return bad_option(e, o, "only for mode = \"gateway\"");
			if (parse_uint(o->value, 255, &v) < 0)
				return bad_option(e, o, "want 0..255");
			tun->gateway_id = (uint8_t)v;
		} else if (!strcmp(o->key, "advertise_s")) {
			if (!gateway)
				return bad_option(e, o, "only for mode = \"gateway\"");
			if (parse_uint(o->value, 65535, &v) < 0)
				return bad_option(e, o, "want seconds, 0..65535 (0: off)");
			tun->advertise_s = (uint16_t)v;
		} else if (!strcmp(o->key, "advertise_to")) {
			if (!gateway)
				return bad_option(e, o, "only for mode = \"gateway\"");
			if (parse_addr(o->value, &tun->advertise_to) < 0)
				return bad_option(e, o, "want a numeric \"ip:port\" or \"[ipv6]:port\"");
			have_to = true;
		} else if (!strcmp(o->key, "answer_timeout_ms")) {
			if (!gateway)
				return bad_option(e, o, "only for mode = \"gateway\"");
			if (parse_uint(o->value, ANSWER_TIMEOUT_MAX_MS, &v) < 0)
				return bad_option(e, o, "want milliseconds, 0..86400000 (0: off)");
			tun->answer_timeout_ms = (uint32_t)v;
		} else if (!strcmp(o->key, "forwarder")) {
			if (gateway)
				return bad_option(e, o, "only for mode = \"terminator\"");
			if (!o->value || !*o->value)
				return bad_option(e, o, "want a local \"host:port\"");
			*forwarder = o->value;
		} else {
			return bad_option(e, o, "unknown option");
		}
	}
	if (tun->advertise_s > 0 && !have_to) {
		snprintf(e->buf, e->len, "option advertise_s needs advertise_to (\"ip:port\")");
		return -EINVAL;
	}
	return 0;
}

static int check_options(enum psktun_role role, const struct psktun_option *opts, size_t n_opts,
			 char *err, size_t err_len)
{
	struct option_err e = { err, err_len };
	const char *forwarder = NULL;
	struct tunnel scratch;

	memset(&scratch, 0, sizeof(scratch));
	scratch.role = role;
	return apply_options(&scratch, opts, n_opts, &forwarder, &e);
}

static int init(const struct psktun_host *host, struct psktun_tunnel *t,
		const struct psktun_option *opts, size_t n_opts, void **tunnel_data)
{
	const char *forwarder = NULL;
	char err[256];
	struct option_err e = { err, sizeof(err) };
	struct tunnel *tun;
	int rc;

	if (!host || host->abi != PSKTUN_PLUGIN_ABI || host->size < sizeof(*host))
		return -EINVAL;
	tun = calloc(1, sizeof(*tun));
	if (!tun)
		return -ENOMEM;
	tun->host = host;
	tun->t = t;
	tun->role = host->role(t);
	tun->gateway_id = GATEWAY_ID_DEFAULT;
	tun->answer_timeout_ms = ANSWER_TIMEOUT_DEFAULT_MS;

	rc = apply_options(tun, opts, n_opts, &forwarder, &e);
	if (rc < 0) {
		host->log(t, PSKTUN_LOG_ERR, "%s", err);
		goto fail;
	}
	if (forwarder) {
		rc = host->use_shared_plain(t, forwarder);
		if (rc < 0) {
			host->log(t, PSKTUN_LOG_ERR, "forwarder \"%s\": %s",
				  forwarder, strerror(-rc));
			goto fail;
		}
		tun->forwarder = true;
	}
	/* The first ADVERTISE goes out as soon as the loop runs: a gateway
	 * that comes up announces itself (section 6.1). */
	if (tun->advertise_s > 0) {
		rc = host->tunnel_timer(t, 1);
		if (rc < 0)
			goto fail;
	}
	*tunnel_data = tun;
	return 0;
fail:
	free(tun);
	return rc;
}

/* The daemon cancels the tunnel's and sessions' timers itself. */
static void fini(void *tunnel_data)
{
	free(tunnel_data);
}

static int session_open(void *tunnel_data, struct psktun_session *s, void **session_data)
{
	struct tunnel *tun = tunnel_data;

	*session_data = NULL;
	if (tun->role != PSKTUN_ROLE_GATEWAY || tun->answer_timeout_ms == 0)
		return 0;
	*session_data = calloc(1, sizeof(struct session));
	return *session_data ? 0 : -ENOMEM;
}

static void session_close(void *tunnel_data, struct psktun_session *s, void *session_data)
{
	free(session_data);
}

PSKTUN_PLUGIN_DECLARE(mqttsn,
		      .version = "MQTT-SN v1.2, " PACKAGE_VERSION,
		      .check_options = check_options,
		      .init = init,
		      .fini = fini,
		      .identify = identify,
		      .on_plain = on_plain,
		      .on_tunnel = on_tunnel,
		      .session_open = session_open,
		      .session_close = session_close,
		      .on_session_timer = on_session_timer,
		      .on_tunnel_timer = on_tunnel_timer);

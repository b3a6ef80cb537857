/* CoAP plugin: validates datagrams, binds a request's identity to the PSK identity, reports unanswered CONs. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psktun/plugin.h"
#include "parse.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/*
 * Outstanding CONs tracked per session. A meter has very few exchanges in
 * flight (RFC 7252 NSTART is 1); when the table is full the oldest entries
 * keep their deadlines and new CONs go untracked, so it never grows.
 */
#define PENDING_MAX		8

/*
 * Default answer timeout. RFC 7252's MAX_TRANSMIT_WAIT (93 s) is when the
 * meter itself gives up; by 30 s a meter with the default ACK_TIMEOUT (2 s,
 * doubling) has sent the CON four times without an answer, which on a
 * working path is very unlikely, and reporting then leaves about a minute
 * of the meter's own retransmission window for the daemon to re-handshake
 * so the exchange can still complete.
 */
#define ANSWER_TIMEOUT_DEFAULT_MS	30000u
#define ANSWER_TIMEOUT_MAX_MS		3600000u

#define QUERY_NAME_MAX		64
#define PATH_INDEX_MAX		64

enum identity_kind {
	IDENTITY_NONE = 0,
	IDENTITY_QUERY,		/* Uri-Query "NAME=VALUE" */
	IDENTITY_PATH,		/* the N-th Uri-Path segment */
};

struct coap_tunnel {
	const struct psktun_host *host;
	struct psktun_tunnel *tunnel;
	enum psktun_role role;
	enum identity_kind kind;
	char query[QUERY_NAME_MAX + 1];
	size_t query_len;
	unsigned path_index;		/* 1-based */
	bool allow_proxy;		/* forward Proxy-Uri / Proxy-Scheme */
	uint32_t answer_timeout_ms;	/* 0: do not track */
};

struct pending {
	uint64_t deadline;
	uint16_t mid;
	bool used;
};

struct coap_session {
	struct pending pending[PENDING_MAX];
	uint64_t armed_for;		/* deadline the session timer runs for */
	bool armed;
};

/* What a request says about who is speaking. */
enum identity_lookup {
	LOOKUP_ABSENT,
	LOOKUP_FOUND,
	LOOKUP_AMBIGUOUS,	/* a backend might read another identity: see find_identity() */
};

/* Strict decimal in [lo, hi]. */
static int parse_uint(const char *s, unsigned long lo, unsigned long hi,
		      unsigned long *out)
{
	unsigned long v = 0;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > hi)
			return -EINVAL;
	}
	if (v < lo)
		return -EINVAL;
	*out = v;
	return 0;
}

static bool printable(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] >= 0x7f)
			return false;
	return true;
}

static int parse_identity_spec(struct coap_tunnel *ct, const char *spec)
{
	unsigned long n;
	size_t len;

	if (strncmp(spec, "query:", 6) == 0) {
		spec += 6;
		len = strlen(spec);
		if (len == 0 || len > QUERY_NAME_MAX ||
		    !printable((const uint8_t *)spec, len) ||
		    strpbrk(spec, "=&") != NULL)
			return -EINVAL;
		memcpy(ct->query, spec, len + 1);
		ct->query_len = len;
		ct->kind = IDENTITY_QUERY;
		return 0;
	}
	if (strncmp(spec, "path:", 5) == 0) {
		if (parse_uint(spec + 5, 1, PATH_INDEX_MAX, &n) < 0)
			return -EINVAL;
		ct->path_index = (unsigned)n;
		ct->kind = IDENTITY_PATH;
		return 0;
	}
	return -EINVAL;
}

/* The one parser for options: coap_check_options and coap_init both use it. */
static int parse_tunnel_options(struct coap_tunnel *ct, const struct psktun_option *opts,
				size_t n_opts, char *err, size_t err_len)
{
	unsigned long n;

	ct->answer_timeout_ms = ANSWER_TIMEOUT_DEFAULT_MS;
	for (size_t i = 0; i < n_opts; i++) {
		const char *key = opts[i].key, *value = opts[i].value;

		if (key == NULL || value == NULL) {
			snprintf(err, err_len, "option without a key or value");
			return -EINVAL;
		}
		if (strcmp(key, "identity") == 0) {
			if (parse_identity_spec(ct, value) < 0) {
				snprintf(err, err_len,
					 "identity = \"%.64s\": expected \"query:NAME\" (NAME up to %d characters, no '=' or '&') or \"path:N\" (N from 1 to %d)",
					 value, QUERY_NAME_MAX, PATH_INDEX_MAX);
				return -EINVAL;
			}
		} else if (strcmp(key, "allow_proxy") == 0) {
			if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
				snprintf(err, err_len,
					 "allow_proxy = \"%.64s\": expected true or false", value);
				return -EINVAL;
			}
			ct->allow_proxy = strcmp(value, "true") == 0;
		} else if (strcmp(key, "answer_timeout_ms") == 0) {
			if (parse_uint(value, 0, ANSWER_TIMEOUT_MAX_MS, &n) < 0) {
				snprintf(err, err_len,
					 "answer_timeout_ms = \"%.64s\": expected milliseconds from 0 (off) to %u",
					 value, ANSWER_TIMEOUT_MAX_MS);
				return -EINVAL;
			}
			ct->answer_timeout_ms = (uint32_t)n;
		} else {
			snprintf(err, err_len,
				 "unknown option \"%.64s\" (known: identity, allow_proxy, answer_timeout_ms)", key);
			return -EINVAL;
		}
	}
	return 0;
}

static int coap_check_options(enum psktun_role role, const struct psktun_option *opts,
			      size_t n_opts, char *err, size_t err_len)
{
	struct coap_tunnel scratch;

	(void)role;
	memset(&scratch, 0, sizeof(scratch));
	return parse_tunnel_options(&scratch, opts, n_opts, err, err_len);
}

static int coap_init(const struct psktun_host *host, struct psktun_tunnel *t,
		     const struct psktun_option *opts, size_t n_opts,
		     void **tunnel_data)
{
	struct coap_tunnel *ct;
	char err[256];

	if (host == NULL || host->abi != PSKTUN_PLUGIN_ABI ||
	    host->size < sizeof(struct psktun_host))
		return -EINVAL;
	ct = calloc(1, sizeof(*ct));
	if (ct == NULL)
		return -ENOMEM;
	ct->host = host;
	ct->tunnel = t;
	ct->role = host->role(t);
	if (parse_tunnel_options(ct, opts, n_opts, err, sizeof(err)) < 0) {
		host->log(t, PSKTUN_LOG_ERR, "%s", err);
		free(ct);
		return -EINVAL;
	}
	*tunnel_data = ct;
	return 0;
}

static void coap_fini(void *tunnel_data)
{
	free(tunnel_data);
}

static bool has_any(const uint8_t *s, size_t len, const char *set)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\0' || strchr(set, s[i]) != NULL)
			return true;
	return false;
}

/*
 * A non-empty Uri-Path segment that a backend which rebuilds the URI as
 * text, or normalises it (RFC 3986 5.2.4, percent-decoding), would read as
 * something else: another number of segments, a query, a fragment, a
 * parameter. (A NUL would end it early for a C string.)
 */
static bool segment_is_ambiguous(const struct coap_opt *o)
{
	if ((o->len == 1 && o->value[0] == '.') ||
	    (o->len == 2 && o->value[0] == '.' && o->value[1] == '.'))
		return true;
	return has_any(o->value, o->len, "/?#%;");
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* A query parameter name that a lenient backend might take for NAME without
 * it being NAME byte for byte: another case, blanks around it, or anything
 * percent-encoded (which could decode to it). */
static bool name_looks_like(const struct coap_tunnel *ct, const uint8_t *name, size_t len)
{
	if (memchr(name, '%', len) != NULL)
		return true;
	while (len > 0 && (name[0] == ' ' || name[0] == '\t')) {
		name++;
		len--;
	}
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	if (len != ct->query_len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (lower(name[i]) != lower((unsigned char)ct->query[i]))
			return false;
	return true;
}

/*
 * The request's identity value, as the tunnel's `identity` option names it.
 * It counts only when stated once, in exactly that place, with nothing a
 * backend might read as another identity (the rule in psktun.conf(5)):
 *  - no Proxy-Uri or Proxy-Scheme (unless allow_proxy): they name another
 *    request target, which the checks below never see;
 *  - no Uri-Path segment "." or "..", none empty but the last, none
 *    holding '/', '?', '#', '%' or ';' (segment_is_ambiguous());
 *  - query:NAME: no Uri-Query holding '&' or ';' (several parameters in one
 *    option), none named like NAME but for case, blanks or percent-encoding,
 *    and NAME itself at most once;
 *  - path:N: the N-th segment, which with the rules above stays the N-th
 *    however the backend normalises the path.
 * Anything else is LOOKUP_AMBIGUOUS.
 */
static enum identity_lookup find_identity(const struct coap_tunnel *ct,
					  const struct coap_msg *m,
					  const uint8_t **value, size_t *len)
{
	enum identity_lookup found = LOOKUP_ABSENT;
	struct coap_opt_iter it;
	struct coap_opt o;
	unsigned segment = 0;
	bool pending_empty = false;
	const uint8_t *eq;
	size_t nlen;

	coap_opt_iter_init(&it, m);
	while (coap_opt_next(&it, &o)) {
		/* An empty segment is ambiguous unless it is the last one
		 * ("/a/"): one a backend merges ("//") shifts the rest. */
		if (pending_empty && o.number == COAP_OPT_URI_PATH)
			return LOOKUP_AMBIGUOUS;
		switch (o.number) {
		case COAP_OPT_PROXY_URI:
		case COAP_OPT_PROXY_SCHEME:
			if (!ct->allow_proxy)
				return LOOKUP_AMBIGUOUS;
			continue;
		case COAP_OPT_URI_PATH:
			if (o.len == 0)
				pending_empty = true;
			else if (segment_is_ambiguous(&o))
				return LOOKUP_AMBIGUOUS;
			if (ct->kind == IDENTITY_PATH && ++segment == ct->path_index) {
				*value = o.value;
				*len = o.len;
				found = LOOKUP_FOUND;
			}
			continue;
		case COAP_OPT_URI_QUERY:
			break;
		default:
			continue;
		}
		if (ct->kind != IDENTITY_QUERY)
			continue;
		if (has_any(o.value, o.len, "&;"))
			return LOOKUP_AMBIGUOUS;
		eq = memchr(o.value, '=', o.len);
		nlen = eq != NULL ? (size_t)(eq - o.value) : o.len;
		if (nlen != ct->query_len || memcmp(o.value, ct->query, nlen) != 0) {
			if (name_looks_like(ct, o.value, nlen))
				return LOOKUP_AMBIGUOUS;
			continue;
		}
		if (found == LOOKUP_FOUND)
			return LOOKUP_AMBIGUOUS;
		/* "NAME" alone counts as an empty value, so it cannot slip
		 * past the check as something the backend reads otherwise. */
		*value = eq != NULL ? eq + 1 : o.value + o.len;
		*len = eq != NULL ? o.len - nlen - 1 : 0;
		found = LOOKUP_FOUND;
	}
	return found;
}

static int coap_identify(void *tunnel_data, const struct sockaddr *from,
			 const uint8_t *buf, size_t len, char *id,
			 size_t *id_len)
{
	const struct coap_tunnel *ct = tunnel_data;
	const uint8_t *value = NULL;
	struct coap_msg m;
	size_t vlen = 0;

	if (coap_parse(&m, buf, len) < 0)
		return -EBADMSG;
	if (ct->kind == IDENTITY_NONE || !coap_is_request(&m))
		return -ENOENT;
	if (find_identity(ct, &m, &value, &vlen) != LOOKUP_FOUND)
		return -ENOENT;
	/* Key file identities are printable text; anything else names nobody. */
	if (vlen == 0 || vlen > *id_len || !printable(value, vlen))
		return -ENOENT;
	memcpy(id, value, vlen);
	*id_len = vlen;
	return 0;
}

/* Does a request name an identity other than the session's? */
static bool names_other_identity(const struct coap_tunnel *ct,
				 struct psktun_session *s,
				 const struct coap_msg *m)
{
	const uint8_t *value = NULL;
	const char *own;
	size_t vlen = 0, own_len = 0;

	if (ct->kind == IDENTITY_NONE || s == NULL || !coap_is_request(m))
		return false;
	switch (find_identity(ct, m, &value, &vlen)) {
	case LOOKUP_ABSENT:
		return false;
	case LOOKUP_AMBIGUOUS:
		return true;
	case LOOKUP_FOUND:
		break;
	}
	own = ct->host->identity(s, &own_len);
	return own == NULL || own_len != vlen || memcmp(own, value, vlen) != 0;
}

/* A CON gets a piggybacked 4.03 over the request itself; a NON is dropped. */
static enum psktun_verdict refuse(struct psktun_dgram *ctx,
				  const struct coap_msg *m, uint8_t *buf,
				  size_t *len, size_t cap)
{
	const struct coap_tunnel *ct = ctx->tunnel_data;
	int n;

	ctx->reason = PSKTUN_REASON_POLICY;
	ct->host->log(ct->tunnel, PSKTUN_LOG_INFO,
		      "refused a %s request (mid %u) naming another identity",
		      m->type == COAP_CON ? "CON" : "NON", (unsigned)m->mid);
	if (m->type != COAP_CON)
		return PSKTUN_DROP;
	n = coap_write_header(buf, cap, COAP_ACK, COAP_CODE_FORBIDDEN, m->mid,
			      m->token, m->tkl);
	if (n < 0)
		return PSKTUN_DROP;
	*len = (size_t)n;
	return PSKTUN_REPLY;
}

/* Point the session timer at the earliest deadline, or cancel it. */
static void rearm(const struct coap_tunnel *ct, struct psktun_session *s,
		  struct coap_session *cs)
{
	const struct pending *first = NULL;
	uint64_t now;

	for (size_t i = 0; i < PENDING_MAX; i++)
		if (cs->pending[i].used &&
		    (first == NULL || cs->pending[i].deadline < first->deadline))
			first = &cs->pending[i];
	if (first == NULL) {
		if (cs->armed)
			ct->host->session_timer(s, 0);
		cs->armed = false;
		return;
	}
	if (cs->armed && cs->armed_for == first->deadline)
		return;
	cs->armed = true;
	cs->armed_for = first->deadline;
	now = ct->host->now_ms(ct->tunnel);
	/* ms == 0 would cancel: an overdue deadline fires after 1 ms. */
	ct->host->session_timer(s, first->deadline > now ?
				   (uint32_t)(first->deadline - now) : 1);
}

static void track_con(const struct coap_tunnel *ct, struct psktun_session *s,
		      struct coap_session *cs, uint16_t mid)
{
	struct pending *free_slot = NULL;

	if (ct->answer_timeout_ms == 0 || s == NULL || cs == NULL)
		return;
	for (size_t i = 0; i < PENDING_MAX; i++) {
		/* A retransmission keeps the first transmission's deadline. */
		if (cs->pending[i].used && cs->pending[i].mid == mid)
			return;
		if (!cs->pending[i].used && free_slot == NULL)
			free_slot = &cs->pending[i];
	}
	if (free_slot == NULL)
		return;
	free_slot->used = true;
	free_slot->mid = mid;
	free_slot->deadline = ct->host->now_ms(ct->tunnel) +
			      ct->answer_timeout_ms;
	rearm(ct, s, cs);
}

static void answer_con(const struct coap_tunnel *ct, struct psktun_session *s,
		       struct coap_session *cs, uint16_t mid)
{
	if (s == NULL || cs == NULL)
		return;
	for (size_t i = 0; i < PENDING_MAX; i++)
		if (cs->pending[i].used && cs->pending[i].mid == mid) {
			cs->pending[i].used = false;
			rearm(ct, s, cs);
			return;
		}
}

static enum psktun_verdict coap_on_plain(struct psktun_dgram *ctx, uint8_t *buf,
					 size_t *len, size_t cap)
{
	const struct coap_tunnel *ct = ctx->tunnel_data;
	struct coap_msg m;

	if (coap_parse(&m, buf, *len) < 0) {
		ctx->reason = PSKTUN_REASON_MALFORMED;
		return PSKTUN_DROP;
	}
	/* Only the gateway's plain side is a meter: the terminator's is the
	 * backend, whose requests to a meter may name anybody, and a sleeping
	 * meter not answering them is no sign of a dead tunnel. */
	if (ct->role != PSKTUN_ROLE_GATEWAY)
		return PSKTUN_FORWARD;
	/* The daemon refuses the identity this request claims from its source. */
	if (ctx->flags & PSKTUN_DGRAM_IDENTITY_REFUSED)
		return refuse(ctx, &m, buf, len, cap);
	if (names_other_identity(ct, ctx->session, &m))
		return refuse(ctx, &m, buf, len, cap);
	if (m.type == COAP_CON)
		track_con(ct, ctx->session, ctx->session_data, m.mid);
	return PSKTUN_FORWARD;
}

static enum psktun_verdict coap_on_tunnel(struct psktun_dgram *ctx,
					  uint8_t *buf, size_t *len, size_t cap)
{
	const struct coap_tunnel *ct = ctx->tunnel_data;
	struct coap_msg m;

	if (coap_parse(&m, buf, *len) < 0) {
		ctx->reason = PSKTUN_REASON_MALFORMED;
		return PSKTUN_DROP;
	}
	if (m.type == COAP_ACK || m.type == COAP_RST)
		answer_con(ct, ctx->session, ctx->session_data, m.mid);
	if (ct->role == PSKTUN_ROLE_TERMINATOR &&
	    names_other_identity(ct, ctx->session, &m))
		return refuse(ctx, &m, buf, len, cap);
	return PSKTUN_FORWARD;
}

static int coap_session_open(void *tunnel_data, struct psktun_session *s,
			     void **session_data)
{
	struct coap_session *cs = calloc(1, sizeof(*cs));

	if (cs == NULL)
		return -ENOMEM;
	*session_data = cs;
	return 0;
}

static void coap_session_close(void *tunnel_data, struct psktun_session *s,
			       void *session_data)
{
	const struct coap_tunnel *ct = tunnel_data;
	struct coap_session *cs = session_data;

	if (cs != NULL && cs->armed)
		ct->host->session_timer(s, 0);
	free(cs);
}

static void coap_on_session_timer(void *tunnel_data, struct psktun_session *s,
				  void *session_data)
{
	const struct coap_tunnel *ct = tunnel_data;
	struct coap_session *cs = session_data;
	unsigned expired = 0;
	uint64_t now;

	if (cs == NULL)
		return;
	now = ct->host->now_ms(ct->tunnel);
	for (size_t i = 0; i < PENDING_MAX; i++)
		if (cs->pending[i].used && cs->pending[i].deadline <= now) {
			cs->pending[i].used = false;
			expired++;
		}
	/* The timer has fired: nothing is armed until rearm() says so. */
	cs->armed = false;
	rearm(ct, s, cs);
	/* The daemon acts on it after this callback returns (plugin.h). */
	if (expired > 0) {
		ct->host->log(ct->tunnel, PSKTUN_LOG_INFO,
			      "%u CON(s) without ACK or RST in %u ms",
			      expired, (unsigned)ct->answer_timeout_ms);
		ct->host->report_silent(s);
	}
}

PSKTUN_PLUGIN_DECLARE(coap,
		      .version = PACKAGE_VERSION,
		      .check_options = coap_check_options,
		      .init = coap_init,
		      .fini = coap_fini,
		      .identify = coap_identify,
		      .on_plain = coap_on_plain,
		      .on_tunnel = coap_on_tunnel,
		      .session_open = coap_session_open,
		      .session_close = coap_session_close,
		      .on_session_timer = coap_on_session_timer);

/* meters: per-meter records behind `psktunctl show`, failure reasons, rate-limited log lines. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"
#include "meters.h"
#include "text.h"

static const char *const slugs[] = {
#define X(slug, t, g) #slug,
	PSKTUN_FAILURES(X)
#undef X
};
static const char *const texts[][2] = {
#define X(slug, t, g) { t, g },
	PSKTUN_FAILURES(X)
#undef X
};

const char *psktun_failure_slug(enum psktun_failure f)
{
	return f < PSKTUN_FAIL_MAX ? slugs[f] : "error";
}

const char *psktun_failure_text(enum psktun_failure f, bool gateway)
{
	return f < PSKTUN_FAIL_MAX ? texts[f][gateway] : "handshake error";
}

struct meter_table *meter_table_new(void)
{
	struct meter_table *mt = calloc(1, sizeof(*mt));

	if (!mt)
		return NULL;
	if (htab_init(&mt->by_identity, 64) < 0) {
		free(mt);
		return NULL;
	}
	return mt;
}

void meter_table_free(struct meter_table *mt)
{
	if (!mt)
		return;
	for (size_t i = 0; i <= mt->by_identity.mask && mt->by_identity.bucket; i++) {
		struct htab_node *n = mt->by_identity.bucket[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(container_of(n, struct meter_rec, node));
		}
	}
	htab_deinit(&mt->by_identity);
	free(mt);
}

static struct meter_rec *meter_find(struct tunnel *t, const char *identity, size_t len)
{
	uint64_t h = identity_hash(identity, len);

	if (!t->meters)
		return NULL;
	for (struct htab_node *n = htab_first(&t->meters->by_identity, h); n; n = htab_next(n, h)) {
		struct meter_rec *m = container_of(n, struct meter_rec, node);

		if (m->identity_len == len && !memcmp(m->identity, identity, len))
			return m;
	}
	return NULL;
}

/* Bounded by the key file: only its identities get a record. */
struct meter_rec *meter_get(struct tunnel *t, const char *identity, size_t len)
{
	struct meter_rec *m;

	if (!len || len > PSKTUN_IDENTITY_MAX || !t->meters)
		return NULL;
	m = meter_find(t, identity, len);
	if (m || !psktun_keys_find(t->d->keys, identity, len))
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	memcpy(m->identity, identity, len);
	m->identity_len = len;
	htab_insert(&t->meters->by_identity, &m->node, identity_hash(identity, len));
	t->meters->n++;
	return m;
}

void meter_forget(struct tunnel *t, const char *identity, size_t len)
{
	struct meter_rec *m = meter_find(t, identity, len);

	if (!m)
		return;
	htab_remove(&t->meters->by_identity, &m->node);
	t->meters->n--;
	free(m);
}

void meter_table_prune(struct tunnel *t)
{
	struct htab *h;

	if (!t->meters)
		return;
	h = &t->meters->by_identity;
	for (size_t i = 0; i <= h->mask && h->bucket; i++) {
		struct htab_node *n = h->bucket[i], *next;

		for (; n; n = next) {
			struct meter_rec *m = container_of(n, struct meter_rec, node);

			next = n->next;
			if (psktun_keys_find(t->d->keys, m->identity, m->identity_len))
				continue;
			htab_remove(h, n);
			t->meters->n--;
			free(m);
		}
	}
}

size_t session_named_identity(struct session *s, char *out, size_t cap)
{
	gnutls_datum_t user = { NULL, 0 };
	size_t len = s->identity_len;

	if (len) {
		memcpy(out, s->identity, len < cap ? len : cap - 1);
	} else if (s->t->mode == PSKTUN_MODE_TERMINATOR && s->tls &&
		   gnutls_psk_server_get_username2(s->tls, &user) == 0 && user.size) {
		len = user.size;
		memcpy(out, user.data, len < cap ? len : cap - 1);
	}
	if (len >= cap)
		len = cap - 1;
	out[len] = '\0';
	return len;
}

static void counters_add(struct meter_counters *to, const struct meter_counters *c)
{
	to->air_in_bytes += c->air_in_bytes;
	to->air_in += c->air_in;
	to->air_out_bytes += c->air_out_bytes;
	to->air_out += c->air_out;
	to->plain_in_bytes += c->plain_in_bytes;
	to->plain_in += c->plain_in;
	to->plain_out_bytes += c->plain_out_bytes;
	to->plain_out += c->plain_out;
}

static void session_counters(const struct session *s, struct meter_counters *c)
{
	*c = (struct meter_counters){
		s->air_in_bytes, s->air_in, s->air_out_bytes, s->air_out,
		s->plain_in_bytes, s->plain_in, s->plain_out_bytes, s->plain_out,
	};
}

void meter_session_fold(struct session *s)
{
	char id[PSKTUN_IDENTITY_MAX + 1];
	size_t len = session_named_identity(s, id, sizeof(id));
	struct meter_rec *m = meter_get(s->t, id, len);
	struct meter_counters c;

	if (!m)
		return;
	session_counters(s, &c);
	counters_add(&m->c, &c);
	s->air_in_bytes = s->air_in = s->air_out_bytes = s->air_out = 0;
	s->plain_in_bytes = s->plain_in = s->plain_out_bytes = s->plain_out = 0;
	if (s->last_rx_ms > m->seen_ms)
		m->seen_ms = s->last_rx_ms;
	if (s->peer.ss_family)
		m->peer = s->peer;
}

void meter_established(struct session *s)
{
	struct meter_rec *m = meter_get(s->t, s->identity, s->identity_len);

	if (!m)
		return;
	m->handshakes++;
	m->handshake_ms = daemon_now_ms(s->t->d);
	m->resumed = gnutls_session_is_resumed(s->tls);
	if (s->peer.ss_family)
		m->peer = s->peer;
}

/*
 * May a line about `key` be logged now? One a key a minute (LOGLIMIT_SLOTS
 * keys remembered; a collision only makes a line come early), and at most
 * LOGLIMIT_PER_MINUTE a tunnel, so a flood of spoofed sources stays a trickle.
 * *suppressed: how many lines about this key were held back since its last.
 */
bool psktun_loglimit_take(struct loglimit *ll, uint64_t key, uint64_t now, uint64_t *suppressed)
{
	typeof(ll->slot[0]) *sl = &ll->slot[key % LOGLIMIT_SLOTS];

	*suppressed = 0;
	if (sl->key == key && sl->last_ms && now - sl->last_ms < LOGLIMIT_INTERVAL_MS) {
		sl->suppressed++;
		return false;
	}
	if (!ll->window_ms || now - ll->window_ms >= 60000) {
		ll->window_ms = now ? now : 1;
		ll->in_window = 0;
	}
	if (ll->in_window >= LOGLIMIT_PER_MINUTE) {
		ll->suppressed++;
		return false;
	}
	ll->in_window++;
	*suppressed = sl->key == key ? sl->suppressed : 0;
	sl->key = key;
	sl->last_ms = now ? now : 1;
	sl->suppressed = 0;
	return true;
}

static uint64_t key_of(unsigned kind, const void *a, size_t alen, const struct sockaddr *addr)
{
	uint64_t h = psktun_hash(a, alen) * 31 + kind;

	if (addr)
		h ^= psktun_addr_hash(addr, true) * 0x9e3779b97f4a7c15ull;
	return h;
}

/* "(3 more since, not logged)" */
static const char *more(uint64_t n, char *buf, size_t len)
{
	if (!n)
		return "";
	snprintf(buf, len, " (%llu more like it in the last minute, not logged)", (unsigned long long)n);
	return buf;
}

void meter_hello_failed(struct tunnel *t, const struct sockaddr *from, const uint8_t random[32])
{
	struct meter_table *mt = t->meters;
	unsigned i;

	if (!mt)
		return;
	i = mt->failed_hello_next++ % 16;
	memcpy(&mt->failed_hello[i].addr, from, psktun_addr_len(from));
	memcpy(mt->failed_hello[i].random, random, 32);
	mt->failed_hello[i].used = true;
}

bool meter_hello_repeat(struct tunnel *t, const struct sockaddr *from, const uint8_t random[32])
{
	struct meter_table *mt = t->meters;

	for (unsigned i = 0; mt && i < 16; i++)
		if (mt->failed_hello[i].used && !memcmp(mt->failed_hello[i].random, random, 32) &&
		    psktun_addr_equal((struct sockaddr *)&mt->failed_hello[i].addr, from, true))
			return true;
	return false;
}

static struct meter_unknown *unknown_slot(struct meter_table *mt, enum meter_unknown_kind kind,
					  const char *name, size_t len, const struct sockaddr *from)
{
	struct meter_unknown *u, *oldest = &mt->unknown[0];

	for (unsigned i = 0; i < METER_UNKNOWN_MAX; i++) {
		u = &mt->unknown[i];
		if (u->last_ms && u->kind == kind &&
		    (kind == UNKNOWN_IDENTITY ? u->name_len == len && !memcmp(u->name, name, len)
					      : psktun_addr_equal((struct sockaddr *)&u->addr, from, true)))
			return u;
		if (u->last_ms < oldest->last_ms)
			oldest = u;
	}
	memset(oldest, 0, sizeof(*oldest));
	oldest->kind = kind;
	memcpy(oldest->name, name, len);
	oldest->name_len = len;
	return oldest;
}

void meter_unknown_seen(struct tunnel *t, enum meter_unknown_kind kind, const char *name, size_t len,
			const struct sockaddr *from, const char *what)
{
	struct meter_table *mt = t->meters;
	uint64_t now = daemon_now_ms(t->d), n;
	char addr[PSKTUN_ADDRSTRLEN], buf[96], quoted[PSKTUN_QUOTED_MAX(PSKTUN_IDENTITY_MAX)];
	struct meter_unknown *u;

	if (!mt)
		return;
	if (len > PSKTUN_IDENTITY_MAX)
		len = PSKTUN_IDENTITY_MAX;
	u = unknown_slot(mt, kind, name, len, from);
	u->count++;
	u->last_ms = now ? now : 1;
	memcpy(&u->addr, from, psktun_addr_len(from));
	if (!what || !psktun_loglimit_take(&mt->log, key_of(kind, name, len, from), now, &n))
		return;
	psktun_addr_format(from, addr, sizeof(addr));
	if (kind == UNKNOWN_IDENTITY)
		log_warn("tunnel %s: datagram from %s dropped: unknown identity %s%s%s", t->conf.name, addr,
			 psktun_quote(name, len, quoted, sizeof(quoted)), what, more(n, buf, sizeof(buf)));
	else
		log_warn("tunnel %s: datagram from %s dropped: %s%s", t->conf.name, addr, what,
			 more(n, buf, sizeof(buf)));
}

void meter_refused(struct tunnel *t, const struct sockaddr *from, enum psktun_failure why,
		   const char *detail)
{
	struct meter_table *mt = t->meters;
	uint64_t now = daemon_now_ms(t->d), n;
	char addr[PSKTUN_ADDRSTRLEN], buf[96];

	t->d->failures[why]++;
	if (!mt || !psktun_loglimit_take(&mt->log, key_of(100 + why, "", 0, from), now, &n))
		return;
	psktun_addr_format(from, addr, sizeof(addr));
	log_warn("tunnel %s: handshake from %s refused: %s%s%s%s%s", t->conf.name, addr,
		 psktun_failure_text(why, t->mode == PSKTUN_MODE_GATEWAY), detail ? " (" : "",
		 detail ? detail : "", detail ? ")" : "", more(n, buf, sizeof(buf)));
}

void meter_handshake_failed(struct session *s, enum psktun_failure why, const char *detail,
			    const char *tail)
{
	struct tunnel *t = s->t;
	bool gw = t->mode == PSKTUN_MODE_GATEWAY;
	char id[PSKTUN_IDENTITY_MAX + 1], addr[PSKTUN_ADDRSTRLEN], buf[96], d[64] = "";
	char quoted[PSKTUN_QUOTED_MAX(PSKTUN_IDENTITY_MAX)];
	size_t len = session_named_identity(s, id, sizeof(id));
	struct meter_rec *m = meter_get(t, id, len);
	uint64_t now = daemon_now_ms(t->d), n;
	const struct sockaddr *peer = (const struct sockaddr *)&s->peer;

	if (s->repeat)
		return;
	t->d->failures[why]++;
	if (detail)
		snprintf(d, sizeof(d), " (%s)", detail);
	if (m) {
		m->failures++;
		m->last_failure = why;
		snprintf(m->failure_detail, sizeof(m->failure_detail), "%s", detail ? detail : "");
		m->failure_ms = now ? now : 1;
	} else if (!gw && why == PSKTUN_FAIL_unknown_identity && len) {
		meter_unknown_seen(t, UNKNOWN_IDENTITY, id, len, peer, NULL);
	}
	/* the same ClientHello would fail the same way: its retransmissions are no news */
	if (!gw && s->has_random && !len && (why == PSKTUN_FAIL_no_cipher_suite || why == PSKTUN_FAIL_error))
		meter_hello_failed(t, peer, s->hello_random);
	if (!t->meters || !psktun_loglimit_take(&t->meters->log,
					 key_of(200 + why, id, len, len || gw ? NULL : peer), now, &n))
		return;
	if (gw)
		log_warn("tunnel %s: handshake for %s with %s failed: %s%s%s%s", t->conf.name,
			 psktun_quote(id, len, quoted, sizeof(quoted)), t->conf.connect, psktun_failure_text(why, true), d,
			 tail ? tail : "", more(n, buf, sizeof(buf)));
	else if (psktun_addr_format(peer, addr, sizeof(addr)))
		log_warn("tunnel %s: handshake with %s at %s failed: %s%s%s", t->conf.name,
			 len ? psktun_quote(id, len, quoted, sizeof(quoted)) : "a client", addr, psktun_failure_text(why, false), d,
			 more(n, buf, sizeof(buf)));
}

/* ------------------------------------------------------------------ show */

enum row_type { ROW_TUNNEL, ROW_METER, ROW_UNKNOWN };

#define NEVER UINT64_MAX

struct show_row {
	enum row_type type;
	char tunnel[64];
	enum meter_unknown_kind kind;	/* ROW_UNKNOWN */
	char identity[PSKTUN_IDENTITY_MAX + 1];
	size_t identity_len;
	int rank;			/* of `state`: the most telling session wins */
	const char *state;
	struct sockaddr_storage peer;
	uint64_t seen_age, handshake_age, failure_age;	/* ms; NEVER */
	bool resumed;
	uint64_t handshakes, failures, count;	/* count: unknowns' datagrams, a tunnel's sessions */
	enum psktun_failure last_failure;
	char failure_detail[48];
	struct meter_counters c;
};

struct show_rows {
	struct show_row *v;
	size_t n, cap;
};

static struct show_row *row_add(struct show_rows *r, enum row_type type, const struct tunnel *t)
{
	struct show_row *row;

	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct show_row *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		r->v = v;
		r->cap = cap;
	}
	row = &r->v[r->n++];
	memset(row, 0, sizeof(*row));
	row->type = type;
	snprintf(row->tunnel, sizeof(row->tunnel), "%s", t->conf.name);
	row->rank = -1;
	row->state = "no-session";
	row->seen_age = row->handshake_age = row->failure_age = NEVER;
	return row;
}

static uint64_t age(uint64_t now, uint64_t then)
{
	return then ? (now >= then ? now - then : 0) : NEVER;
}

static int state_rank(enum session_state st)
{
	switch (st) {
	case SESSION_ESTABLISHED: return 5;
	case SESSION_HANDSHAKING: return 4;
	case SESSION_RESOLVING: return 3;
	case SESSION_NEW: return 2;
	case SESSION_BACKOFF: return 1;
	case SESSION_CLOSING: return 0;
	}
	return 0;
}

static void collect_tunnel(struct tunnel *t, struct show_rows *r, uint64_t now)
{
	struct meter_table *mt = t->meters;
	struct show_row *row = row_add(r, ROW_TUNNEL, t);
	size_t first;

	if (!row)
		return;
	row->count = t->n_sessions;
	first = r->n;
	/* every live session's meter gets a record (bounded by the key file) */
	for (struct session *s = t->sessions; s; s = s->next)
		if (s->identity_len)
			meter_get(t, s->identity, s->identity_len);
	for (size_t i = 0; mt && i <= mt->by_identity.mask; i++) {
		for (struct htab_node *n = mt->by_identity.bucket[i]; n; n = n->next) {
			struct meter_rec *m = container_of(n, struct meter_rec, node);

			if (!(row = row_add(r, ROW_METER, t)))
				return;
			m->row = r->n - 1;
			memcpy(row->identity, m->identity, m->identity_len + 1);
			row->identity_len = m->identity_len;
			row->peer = m->peer;
			row->seen_age = age(now, m->seen_ms);
			row->handshake_age = age(now, m->handshake_ms);
			row->resumed = m->resumed;
			row->handshakes = m->handshakes;
			row->failures = m->failures;
			row->failure_age = age(now, m->failure_ms);
			row->last_failure = m->last_failure;
			memcpy(row->failure_detail, m->failure_detail, sizeof(row->failure_detail));
			row->c = m->c;
		}
	}
	/* Live sessions add to their meter's row (the record says which). */
	for (struct session *s = t->sessions; s; s = s->next) {
		struct meter_counters c;
		struct meter_rec *m;

		if (!s->identity_len)
			continue;
		m = meter_find(t, s->identity, s->identity_len);
		row = m && m->row >= first && m->row < r->n ? &r->v[m->row] : NULL;
		if (!row) {
			if (!(row = row_add(r, ROW_METER, t)))
				return;
			memcpy(row->identity, s->identity, s->identity_len + 1);
			row->identity_len = s->identity_len;
		}
		session_counters(s, &c);
		counters_add(&row->c, &c);
		if (state_rank(s->state) > row->rank) {
			row->rank = state_rank(s->state);
			row->state = session_state_name(s->state);
		}
		if (age(now, s->last_rx_ms) <= row->seen_age) {
			row->seen_age = age(now, s->last_rx_ms);
			if (s->peer.ss_family)
				row->peer = s->peer;
		}
	}
	for (unsigned i = 0; mt && i < METER_UNKNOWN_MAX; i++) {
		const struct meter_unknown *u = &mt->unknown[i];

		if (!u->last_ms || !(row = row_add(r, ROW_UNKNOWN, t)))
			continue;
		row->kind = u->kind;
		memcpy(row->identity, u->name, u->name_len);
		row->identity[u->name_len] = '\0';
		row->identity_len = u->name_len;
		row->peer = u->addr;
		row->count = u->count;
		row->seen_age = age(now, u->last_ms);
	}
}

struct show_rows *show_rows_collect(struct daemon *d)
{
	struct show_rows *r = calloc(1, sizeof(*r));
	uint64_t now = daemon_now_ms(d);

	if (!r)
		return NULL;
	for (struct tunnel *t = d->tunnels; t; t = t->next)
		collect_tunnel(t, r, now);
	return r;
}

void show_rows_free(struct show_rows *r)
{
	if (!r)
		return;
	free(r->v);
	free(r);
}

/* The key file's order: memcmp, then length. */
static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static int row_cmp(const void *pa, const void *pb)
{
	const struct show_row *a = pa, *b = pb;
	int c = strcmp(a->tunnel, b->tunnel);

	if (c)
		return c;
	if (a->type != b->type)
		return (int)a->type - (int)b->type;
	if (a->type == ROW_UNKNOWN) {
		if (a->kind != b->kind)
			return (int)a->kind - (int)b->kind;
		if (a->kind == UNKNOWN_SOURCE) {
			uint64_t ha = psktun_addr_hash((struct sockaddr *)&a->peer, true);
			uint64_t hb = psktun_addr_hash((struct sockaddr *)&b->peer, true);

			if (!psktun_addr_equal((struct sockaddr *)&a->peer, (struct sockaddr *)&b->peer, true))
				return ha < hb ? -1 : ha > hb ? 1 : memcmp(&a->peer, &b->peer, sizeof(a->peer));
			return 0;
		}
	}
	return id_cmp(a->identity, a->identity_len, b->identity, b->identity_len);
}

static int unknown_age_cmp(const void *pa, const void *pb)
{
	const struct show_row *a = pa, *b = pb;

	return (a->seen_age > b->seen_age) - (a->seen_age < b->seen_age);
}

/* Two workers' rows of one meter (or unknown, or tunnel): into a. */
static void row_merge(struct show_row *a, const struct show_row *b)
{
	counters_add(&a->c, &b->c);
	a->handshakes += b->handshakes;
	a->failures += b->failures;
	a->count += b->count;
	if (b->rank > a->rank) {
		a->rank = b->rank;
		a->state = b->state;
	}
	if (b->seen_age < a->seen_age) {
		a->seen_age = b->seen_age;
		if (b->peer.ss_family)
			a->peer = b->peer;
	}
	if (b->handshake_age < a->handshake_age) {
		a->handshake_age = b->handshake_age;
		a->resumed = b->resumed;
	}
	if (b->failure_age < a->failure_age) {
		a->failure_age = b->failure_age;
		a->last_failure = b->last_failure;
		memcpy(a->failure_detail, b->failure_detail, sizeof(a->failure_detail));
	}
}

/* A field: control bytes (tab, newline), 0x7f and backslash as \xHH; empty as "-". */
static void tfield(struct text *t, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '\\')
			text_printf(t, "\\x%02x", c);
		else
			text_printf(t, "%c", c);
	}
	if (!len)
		text_printf(t, "-");
}

static void tage(struct text *t, uint64_t ms)
{
	if (ms == NEVER)
		text_printf(t, "\t-");
	else
		text_printf(t, "\t%llu", (unsigned long long)(ms / 1000));
}

static void taddr(struct text *t, const struct sockaddr_storage *ss)
{
	char addr[PSKTUN_ADDRSTRLEN];

	text_printf(t, "\t%s", ss->ss_family ? psktun_addr_format((const struct sockaddr *)ss, addr,
								 sizeof(addr)) : "-");
}

static void meter_line(struct text *t, const struct show_row *r)
{
	text_printf(t, "meter\t%s\t", r->tunnel);
	tfield(t, r->identity, r->identity_len);
	text_printf(t, "\t%s", r->state);
	taddr(t, &r->peer);
	tage(t, r->seen_age);
	tage(t, r->handshake_age);
	text_printf(t, "\t%s", r->handshake_age == NEVER ? "-" : r->resumed ? "resumed" : "full");
	text_printf(t, "\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu",
		(unsigned long long)r->c.air_in_bytes, (unsigned long long)r->c.air_in,
		(unsigned long long)r->c.air_out_bytes, (unsigned long long)r->c.air_out,
		(unsigned long long)r->c.plain_in_bytes, (unsigned long long)r->c.plain_in,
		(unsigned long long)r->c.plain_out_bytes, (unsigned long long)r->c.plain_out,
		(unsigned long long)r->handshakes, (unsigned long long)r->failures);
	if (r->failure_age == NEVER) {
		text_printf(t, "\t-\t-\t-\n");
		return;
	}
	text_printf(t, "\t%s", psktun_failure_slug(r->last_failure));
	tage(t, r->failure_age);
	text_printf(t, "\t");
	tfield(t, r->failure_detail, strlen(r->failure_detail));
	text_printf(t, "\n");
}

static void never_line(struct text *t, const char *tunnel, const struct psktun_key *k)
{
	text_printf(t, "meter\t%s\t", tunnel);
	tfield(t, k->identity, k->identity_len);
	text_printf(t, "\tnever-seen\t-\t-\t-\t-\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t-\t-\t-\n");
}

char *show_text(struct daemon *d, struct show_rows **rows, unsigned n_rows, size_t *len)
{
	struct show_rows all = { NULL, 0, 0 };
	struct text out = { NULL, 0, 0 };
	size_t i, j, n;

	for (unsigned w = 0; w < n_rows; w++) {
		if (!rows[w] || !rows[w]->n)
			continue;
		struct show_row *v = realloc(all.v, (all.n + rows[w]->n) * sizeof(*v));

		if (!v)
			continue;
		all.v = v;
		memcpy(all.v + all.n, rows[w]->v, rows[w]->n * sizeof(*v));
		all.n += rows[w]->n;
	}
	if (all.n)
		qsort(all.v, all.n, sizeof(*all.v), row_cmp);
	for (i = 0, n = 0; i < all.n; i++) {	/* one row a tunnel, meter and unknown */
		if (n && !row_cmp(&all.v[n - 1], &all.v[i]))
			row_merge(&all.v[n - 1], &all.v[i]);
		else
			all.v[n++] = all.v[i];
	}
	all.n = n;
	for (struct tunnel *t = d->tunnels; t; t = t->next) {
		const struct psktun_keys *keys = d->keys;
		struct show_row *tr = NULL;
		size_t k = 0, u0, u1;

		for (i = 0; i < all.n && !tr; i++)
			if (all.v[i].type == ROW_TUNNEL && !strcmp(all.v[i].tunnel, t->conf.name))
				tr = &all.v[i];
		text_printf(&out, "tunnel\t%s\t%s\t%s\t%s\t%llu\n", t->conf.name,
			t->mode == PSKTUN_MODE_GATEWAY ? "gateway" : "terminator", t->conf.accept,
			t->conf.connect, (unsigned long long)(tr ? tr->count : 0));
		if (!tr)
			continue;
		/* meter rows follow the tunnel row (same sort order as the key file) */
		for (j = tr - all.v + 1; j < all.n && all.v[j].type == ROW_METER &&
					 !strcmp(all.v[j].tunnel, t->conf.name); j++) {
			const struct show_row *r = &all.v[j];

			for (; k < keys->n && id_cmp(keys->v[k].identity, keys->v[k].identity_len,
						     r->identity, r->identity_len) < 0; k++)
				never_line(&out, t->conf.name, &keys->v[k]);
			if (k < keys->n && !id_cmp(keys->v[k].identity, keys->v[k].identity_len,
						   r->identity, r->identity_len))
				k++;
			meter_line(&out, r);
		}
		for (; k < keys->n; k++)
			never_line(&out, t->conf.name, &keys->v[k]);
		u0 = j;
		for (u1 = u0; u1 < all.n && all.v[u1].type == ROW_UNKNOWN &&
			      !strcmp(all.v[u1].tunnel, t->conf.name); u1++)
			;
		qsort(all.v + u0, u1 - u0, sizeof(*all.v), unknown_age_cmp);
		for (j = u0; j < u1 && j - u0 < METER_UNKNOWN_MAX; j++) {
			const struct show_row *r = &all.v[j];

			text_printf(&out, "unknown\t%s\t%s\t", r->tunnel,
				r->kind == UNKNOWN_IDENTITY ? "identity" : "source");
			tfield(&out, r->identity, r->identity_len);
			taddr(&out, &r->peer);
			text_printf(&out, "\t%llu", (unsigned long long)r->count);
			tage(&out, r->seen_age);
			text_printf(&out, "\n");
		}
	}
	free(all.v);
	*len = out.len;
	return out.p;
}

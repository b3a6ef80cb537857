/* cache: the terminator fleet's shared session cache in Redis (session_cache.redis), asynchronous on the loop. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gnutls/crypto.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"
#include "text.h"

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

/*
 * What Redis holds never opens a session by itself: the key is
 * "psktun:" + HMAC-SHA256(index key, session ID) cut to 16 bytes, the value
 * the entry sealed (AES-256-GCM, random nonce, the Redis key as associated
 * data, so a value moved to another key does not open) with the seal key;
 * both keys derive from session_cache.key_file (seal.c). A value that does
 * not open is a miss. SET ... PX gives each entry the lifetime it has left.
 *
 *   value (sealed)   version u8 | identity_len u8 | key digest (16) |
 *                    expires_at u64 (wall clock, s) | identity | resumption data
 *
 * A ClientHello naming a session ID that the local cache lacks is held
 * (CACHE_PENDING at most; beyond that it goes on at once and counts
 * cache_overflow) while GET asks Redis; it goes on to the terminator when
 * the answer comes (a hit is in the local cache by then: GnuTLS's retrieve
 * callback is synchronous) or after CACHE_WAIT_MS (cache_timeouts), a full
 * handshake then. Redis down or slow: lookups are not made (cache_errors),
 * the local cache and full handshakes carry on, one line is logged when it
 * goes and one when it is back, and the connection is tried again with a
 * doubling delay.
 */
#define CACHE_PENDING 256		/* ClientHellos held at once: a burst of a gateway's (max_handshakes 100) and more */
#define CACHE_WAIT_MS 100		/* the longest one is held */
#define CACHE_HOLD_MAX 1500		/* a larger ClientHello is not held */
#define CACHE_INFLIGHT_MAX 4096		/* commands unanswered: Redis is stuck */
#define CACHE_PING_MS 1000		/* a PING unanswered this long: Redis is gone */
#define CACHE_CONNECT_MS 2000
#define CACHE_RETRY_MIN_MS 100
#define CACHE_RETRY_MAX_MS 5000
#define CACHE_KEY_PREFIX "psktun:"
#define CACHE_KEY_LEN (sizeof(CACHE_KEY_PREFIX) - 1 + 16)
#define CACHE_VALUE_VERSION 1
#define CACHE_SYNC_STEP 256		/* entries stored a loop turn after a (re)connection */
#define CACHE_VALUE_HDR (1 + 1 + PSKTUN_RESUME_DIGEST_LEN + 8)

enum cache_state { CACHE_DOWN, CACHE_RESOLVING, CACHE_CONNECTING, CACHE_UP };

struct pending {
	struct shared_cache *c;
	uv_timer_t timer;
	bool used;
	unsigned gen;
	struct tunnel *t;
	struct sockaddr_storage accept_addr;	/* to tell the tunnel is still the one */
	struct sockaddr_storage from;
	uint8_t sid[32];
	size_t sid_len, len;
	uint8_t hello[CACHE_HOLD_MAX];
};

struct lookup {			/* a GET's privdata */
	struct shared_cache *c;
	unsigned slot, gen;
	uint8_t rkey[CACHE_KEY_LEN];
	uint8_t sid[32];
	size_t sid_len;
};

struct sid {
	uint8_t len;
	uint8_t sid[32];
};

struct shared_cache {
	struct daemon *d;
	uv_timer_t sync_timer;
	struct sid *sync;		/* the local cache's session IDs, to store (on_sync) */
	size_t n_sync, sync_cap, sync_pos;
	char host[256], where[300];
	unsigned port, db;
	enum cache_state state;
	redisAsyncContext *ac;
	uv_timer_t timer;		/* retry, connect timeout, PING */
	uv_getaddrinfo_t resolve;
	unsigned retry_ms;
	unsigned inflight;
	bool ping_out;
	bool down_logged, ever_up;
	uint64_t since_ms;		/* up or down since (loop time): for `show` */
	char why[96];			/* why it went down last */
	unsigned replaying;		/* a held ClientHello is going on: do not hold it again */
	bool closing;
	unsigned open_handles;		/* the struct is freed when the last one is closed */
	struct pending slot[CACHE_PENDING];
};

static void connect_start(struct shared_cache *c);
static void sync_start(struct shared_cache *c);

static void cache_free(struct shared_cache *c)
{
	free(c->sync);
	free(c);
}

static void handle_closed(uv_handle_t *h)
{
	struct shared_cache *c = h->data;

	if (--c->open_handles == 0)
		cache_free(c);
}

static void arm(struct shared_cache *c, uint64_t ms, uv_timer_cb cb)
{
	uv_timer_start(&c->timer, cb, ms, 0);
}

static void on_retry(uv_timer_t *h)
{
	connect_start(h->data);
}

/* Down: once in the log, the connection freed, another try later. */
static void go_down(struct shared_cache *c, const char *why)
{
	redisAsyncContext *ac = c->ac;
	unsigned jitter;

	c->ac = NULL;
	if (c->state == CACHE_UP)
		c->since_ms = uv_now(c->d->loop);
	if (!c->closing) {	/* one line of text: a field of show --dump */
		snprintf(c->why, sizeof(c->why), "%s", why);
		for (char *p = c->why; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
	}
	c->state = CACHE_DOWN;
	c->ping_out = false;
	__atomic_store_n(&c->d->cache_up, false, __ATOMIC_RELAXED);
	if (!c->down_logged && !c->closing) {
		log_warn("session cache: Redis at %s is down (%s); serving with the local cache and full "
			 "handshakes, trying again", c->where, why);
		c->down_logged = true;
	}
	if (ac) {
		ac->data = NULL;	/* its callbacks (with NULL replies) find no cache */
		redisAsyncFree(ac);	/* deferred by hiredis when inside its callback */
	}
	if (c->closing)
		return;
	daemon_rand(&jitter, sizeof(jitter));
	arm(c, c->retry_ms + jitter % (c->retry_ms / 2 + 1), on_retry);
	c->retry_ms = c->retry_ms * 2 > CACHE_RETRY_MAX_MS ? CACHE_RETRY_MAX_MS : c->retry_ms * 2;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct shared_cache *c = ac->data;

	if (!c || c->ac != ac)
		return;
	c->ac = NULL;	/* hiredis frees it after this callback */
	go_down(c, status == REDIS_OK ? "connection closed" : ac->errstr[0] ? ac->errstr : "connection lost");
}

static void on_ping_timer(uv_timer_t *h);

static void on_pong(redisAsyncContext *ac, void *r, void *priv)
{
	struct shared_cache *c = ac->data;
	redisReply *reply = r;

	if (!c)
		return;
	c->inflight--;
	c->ping_out = false;
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		go_down(c, reply ? reply->str : "no answer to PING");
}

static void on_ping_timer(uv_timer_t *h)
{
	struct shared_cache *c = h->data;

	if (c->state != CACHE_UP)
		return;
	if (c->ping_out) {
		go_down(c, "no answer within a second");
		return;
	}
	c->ping_out = true;
	c->inflight++;
	if (redisAsyncCommand(c->ac, on_pong, NULL, "PING") != REDIS_OK) {
		c->inflight--;
		go_down(c, "cannot send");
		return;
	}
	arm(c, CACHE_PING_MS, on_ping_timer);
}

static void on_select(redisAsyncContext *ac, void *r, void *priv)
{
	struct shared_cache *c = ac->data;
	redisReply *reply = r;

	if (!c)
		return;
	c->inflight--;
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		go_down(c, reply ? reply->str : "SELECT failed");
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct shared_cache *c = ac->data;

	if (!c || c->ac != ac)
		return;
	if (status != REDIS_OK) {
		c->ac = NULL;	/* hiredis frees it */
		go_down(c, ac->errstr[0] ? ac->errstr : "cannot connect");
		return;
	}
	if (c->db) {
		c->inflight++;
		redisAsyncCommand(ac, on_select, NULL, "SELECT %u", c->db);
	}
	c->state = CACHE_UP;
	c->since_ms = uv_now(c->d->loop);
	c->retry_ms = CACHE_RETRY_MIN_MS;
	__atomic_store_n(&c->d->cache_up, true, __ATOMIC_RELAXED);
	if (c->down_logged)
		log_notice("session cache: Redis at %s is back", c->where);
	else if (!c->ever_up)
		log_info("session cache: Redis at %s is up", c->where);
	c->down_logged = false;
	c->ever_up = true;
	arm(c, CACHE_PING_MS, on_ping_timer);
	sync_start(c);
}

static void on_connect_timeout(uv_timer_t *h)
{
	struct shared_cache *c = h->data;

	if (c->state == CACHE_CONNECTING)
		go_down(c, "no connection within two seconds");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct shared_cache *c = req->data;
	char ip[PSKTUN_ADDRSTRLEN];
	redisAsyncContext *ac;

	if (c->closing || status < 0) {
		if (res)
			uv_freeaddrinfo(res);
		if (!c->closing)
			go_down(c, uv_strerror(status));
		if (--c->open_handles == 0)
			cache_free(c);
		return;
	}
	c->open_handles--;	/* the request is done; the timer keeps us */
	if (res->ai_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
	else
		uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
	uv_freeaddrinfo(res);
	/* an address, so hiredis's own (blocking) resolver has nothing to do */
	ac = redisAsyncConnect(ip, (int)c->port);
	if (!ac || ac->err || redisLibuvAttach(ac, c->d->loop) != REDIS_OK) {
		char why[128];

		snprintf(why, sizeof(why), "%s", ac && ac->errstr[0] ? ac->errstr : "cannot connect");
		if (ac)
			redisAsyncFree(ac);
		go_down(c, why);
		return;
	}
	ac->data = c;
	c->ac = ac;
	c->state = CACHE_CONNECTING;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	arm(c, CACHE_CONNECT_MS, on_connect_timeout);
}

static void connect_start(struct shared_cache *c)
{
	int r;

	if (c->closing || c->state != CACHE_DOWN)
		return;
	c->state = CACHE_RESOLVING;
	c->resolve.data = c;
	r = uv_getaddrinfo(c->d->loop, &c->resolve, on_resolved, c->host, NULL,
			   &(struct addrinfo){ .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM });
	if (r < 0) {
		c->state = CACHE_DOWN;
		go_down(c, uv_strerror(r));
		return;
	}
	c->open_handles++;
}

int shared_cache_start(struct daemon *d)
{
	const struct psktun_conf_cache *conf = &d->cfg->cache;
	struct shared_cache *c;

	if (!conf->redis || d->cfg->mode != PSKTUN_MODE_TERMINATOR)
		return 0;
	if (!d->cache_keys)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->d = d;
	snprintf(c->host, sizeof(c->host), "%s", conf->redis_host);
	c->port = conf->redis_port;
	c->db = conf->redis_db;
	snprintf(c->where, sizeof(c->where), "%s%s%s:%u", strchr(c->host, ':') ? "[" : "", c->host,
		 strchr(c->host, ':') ? "]" : "", c->port);
	c->retry_ms = CACHE_RETRY_MIN_MS;
	c->since_ms = uv_now(d->loop);
	uv_timer_init(d->loop, &c->timer);
	c->timer.data = c;
	uv_timer_init(d->loop, &c->sync_timer);
	c->sync_timer.data = c;
	c->open_handles = 2;
	for (unsigned i = 0; i < CACHE_PENDING; i++) {
		c->slot[i].c = c;
		uv_timer_init(d->loop, &c->slot[i].timer);
		c->slot[i].timer.data = &c->slot[i];
		c->open_handles++;
	}
	d->cache = c;
	connect_start(c);
	return 0;
}

/*
 * `show`'s first record (psktunctl(8)): where, the state (up; connecting:
 * never up yet; down: waiting for the next try; reconnecting: down, trying),
 * for how long in seconds, the next try in ms or -, why it went down or -,
 * the workers connected and all of them, then the counters summed over them.
 */
void shared_cache_show(struct daemon *d, const struct psktun_stats *sum, unsigned up, unsigned n,
		       struct text *t)
{
	struct shared_cache *c = d->cache;
	const char *state;
	uint64_t now;

	if (!c)
		return;
	now = uv_now(d->loop);
	if (c->state == CACHE_UP)
		state = "up";
	else if (!c->ever_up && !c->down_logged)
		state = "connecting";
	else
		state = c->state == CACHE_DOWN ? "down" : "reconnecting";
	text_printf(t, "cache\t%s\t%s\t%llu\t", c->where, state,
		    (unsigned long long)((now - c->since_ms) / 1000));
	if (c->state == CACHE_DOWN && !c->closing)
		text_printf(t, "%llu", (unsigned long long)uv_timer_get_due_in(&c->timer));
	else
		text_printf(t, "-");
	text_printf(t, "\t%s\t%u\t%u\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\n",
		    c->state == CACHE_UP || !c->why[0] ? "-" : c->why, up, n,
		    (unsigned long long)sum->cache_hits, (unsigned long long)sum->cache_misses,
		    (unsigned long long)sum->cache_timeouts, (unsigned long long)sum->cache_overflow,
		    (unsigned long long)sum->cache_stores, (unsigned long long)sum->cache_errors);
}

void shared_cache_stop(struct daemon *d)
{
	struct shared_cache *c = d->cache;

	if (!c)
		return;
	d->cache = NULL;
	c->closing = true;
	if (c->state == CACHE_RESOLVING)
		uv_cancel((uv_req_t *)&c->resolve);	/* on_resolved frees its part */
	go_down(c, "stopping");
	for (unsigned i = 0; i < CACHE_PENDING; i++) {
		c->slot[i].used = false;
		c->slot[i].timer.data = c;
		uv_close((uv_handle_t *)&c->slot[i].timer, handle_closed);
	}
	uv_close((uv_handle_t *)&c->timer, handle_closed);
	uv_close((uv_handle_t *)&c->sync_timer, handle_closed);
}

static void redis_key(const struct daemon *d, const uint8_t *sid, size_t len, uint8_t out[CACHE_KEY_LEN])
{
	uint8_t mac[32];
	size_t p = sizeof(CACHE_KEY_PREFIX) - 1;

	gnutls_hmac_fast(GNUTLS_MAC_SHA256, d->cache_keys->index, sizeof(d->cache_keys->index), sid, len, mac);
	memcpy(out, CACHE_KEY_PREFIX, p);
	memcpy(out + p, mac, CACHE_KEY_LEN - p);
}

static void on_stored(redisAsyncContext *ac, void *r, void *priv)
{
	struct shared_cache *c = ac->data;
	redisReply *reply = r;

	if (!c)
		return;
	c->inflight--;
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		c->d->stats.cache_errors++;
}

static bool usable(struct shared_cache *c)
{
	if (!c || c->state != CACHE_UP)
		return false;
	if (c->inflight >= CACHE_INFLIGHT_MAX) {
		go_down(c, "too many commands unanswered");
		return false;
	}
	return true;
}

/* SET one entry, sealed, with the lifetime it has left (expires: wall clock s). */
static int set_entry(struct shared_cache *c, const uint8_t *sid, size_t sid_len, const char *identity,
		     size_t id_len, const uint8_t *digest, const uint8_t *data, size_t data_len, uint64_t expires)
{
	struct daemon *d = c->d;
	uint8_t rkey[CACHE_KEY_LEN], *plain, *sealed;
	size_t len = CACHE_VALUE_HDR + id_len + data_len;
	uint64_t wall = (uint64_t)time(NULL);
	int r;

	if (id_len > 255 || expires <= wall)
		return -EINVAL;
	plain = malloc(len);
	sealed = malloc(len + PSKTUN_SEAL_OVERHEAD);
	if (!plain || !sealed) {
		free(plain);
		free(sealed);
		return -ENOMEM;
	}
	redis_key(d, sid, sid_len, rkey);
	plain[0] = CACHE_VALUE_VERSION;
	plain[1] = (uint8_t)id_len;
	memcpy(plain + 2, digest, PSKTUN_RESUME_DIGEST_LEN);
	for (int i = 0; i < 8; i++)
		plain[2 + PSKTUN_RESUME_DIGEST_LEN + i] = (uint8_t)(expires >> (56 - 8 * i));
	memcpy(plain + CACHE_VALUE_HDR, identity, id_len);
	memcpy(plain + CACHE_VALUE_HDR + id_len, data, data_len);
	r = psktun_seal(d->cache_keys->seal, rkey, sizeof(rkey), plain, len, sealed);
	gnutls_memset(plain, 0, len);
	free(plain);
	if (r == 0) {
		c->inflight++;
		if (redisAsyncCommand(c->ac, on_stored, NULL, "SET %b %b PX %llu", rkey, sizeof(rkey), sealed,
				      len + PSKTUN_SEAL_OVERHEAD, (unsigned long long)(expires - wall) * 1000) == REDIS_OK) {
			d->stats.cache_stores++;
		} else {
			c->inflight--;
			r = -EIO;
		}
	}
	free(sealed);
	return r;
}

void shared_cache_store(struct daemon *d, const gnutls_datum_t *sid, const gnutls_datum_t *data,
			const char *identity, size_t id_len, const uint8_t digest[32])
{
	struct shared_cache *c = d->cache;

	if (!c || sid->size > 32)
		return;
	if (!usable(c)) {
		d->stats.cache_errors++;	/* stored when Redis is back (sync_start) */
		return;
	}
	if (set_entry(c, sid->data, sid->size, identity, id_len, digest, data->data, data->size,
		      (uint64_t)time(NULL) + PSKTUN_RESUME_LIFETIME_S) < 0)
		d->stats.cache_errors++;
}

static void sync_one(void *arg, const struct resume_view *v)
{
	struct shared_cache *c = arg;
	uint64_t now_s = daemon_now_ms(c->d) / 1000;

	set_entry(c, v->key, v->key_len, v->identity, v->identity_len, v->digest, v->data, v->data_len,
		  (uint64_t)time(NULL) + (v->expires_s - now_s));
}

static void on_sync(uv_timer_t *h)
{
	struct shared_cache *c = h->data;
	unsigned n = 0;

	while (c->sync_pos < c->n_sync && n++ < CACHE_SYNC_STEP && usable(c)) {
		struct sid *x = &c->sync[c->sync_pos++];

		dtls_server_cache_with(c->d, x->sid, x->len, sync_one, c);
	}
	if (c->sync_pos < c->n_sync && c->state == CACHE_UP)
		uv_timer_start(&c->sync_timer, on_sync, 0, 0);
}

static void sync_collect(void *arg, const struct resume_view *v)
{
	struct shared_cache *c = arg;

	if (c->n_sync < c->sync_cap && v->key_len <= sizeof(c->sync[0].sid)) {
		c->sync[c->n_sync].len = (uint8_t)v->key_len;
		memcpy(c->sync[c->n_sync].sid, v->key, v->key_len);
		c->n_sync++;
	}
}

/*
 * Connected (again): Redis may have lost what it held (a restart without
 * persistence) and missed what was made meanwhile, so every live entry of
 * the local cache goes in again, CACHE_SYNC_STEP a loop turn so that the
 * loop serves meanwhile. The cache is the process's: the leader does it.
 */
static void sync_start(struct shared_cache *c)
{
	uint64_t n, bytes;

	if (c->d->leader)
		return;
	dtls_server_cache_stats(&n, &bytes);
	free(c->sync);
	c->sync = n ? malloc(n * sizeof(*c->sync)) : NULL;
	c->sync_cap = c->sync ? n : 0;
	c->n_sync = c->sync_pos = 0;
	if (!c->sync)
		return;
	dtls_server_cache_foreach(c->d, sync_collect, c);
	uv_timer_start(&c->sync_timer, on_sync, 0, 0);
}

void shared_cache_remove(struct daemon *d, const gnutls_datum_t *sid)
{
	struct shared_cache *c = d->cache;
	uint8_t rkey[CACHE_KEY_LEN];

	if (!usable(c))
		return;
	redis_key(d, sid->data, sid->size, rkey);
	c->inflight++;
	if (redisAsyncCommand(c->ac, on_stored, NULL, "DEL %b", rkey, sizeof(rkey)) != REDIS_OK)
		c->inflight--;
}

/* A value from Redis into the local cache; false when it does not open or has expired. */
static bool take_value(struct daemon *d, const uint8_t rkey[CACHE_KEY_LEN], const uint8_t *sid, size_t sid_len,
		       const uint8_t *val, size_t len)
{
	uint64_t expires = 0, wall = (uint64_t)time(NULL);
	struct resume_view v;
	uint8_t *plain;
	size_t plen;
	bool ok = false;

	if (len < PSKTUN_SEAL_OVERHEAD + CACHE_VALUE_HDR + 1)
		return false;
	plen = len - PSKTUN_SEAL_OVERHEAD;
	plain = malloc(plen);
	if (!plain)
		return false;
	if (psktun_unseal(d->cache_keys->seal, rkey, CACHE_KEY_LEN, val, len, plain) == 0 &&
	    plain[0] == CACHE_VALUE_VERSION && CACHE_VALUE_HDR + (size_t)plain[1] < plen) {
		for (int i = 0; i < 8; i++)
			expires = expires << 8 | plain[2 + PSKTUN_RESUME_DIGEST_LEN + i];
		v.key = sid;
		v.key_len = sid_len;
		v.identity = (const char *)plain + CACHE_VALUE_HDR;
		v.identity_len = plain[1];
		v.digest = plain + 2;
		v.data = plain + CACHE_VALUE_HDR + plain[1];
		v.data_len = plen - CACHE_VALUE_HDR - plain[1];
		if (expires > wall) {
			v.expires_s = daemon_now_ms(d) / 1000 +
				      (expires - wall < PSKTUN_RESUME_LIFETIME_S ? expires - wall
										: PSKTUN_RESUME_LIFETIME_S);
			ok = dtls_server_cache_put(d, &v) == 0;
		}
	}
	gnutls_memset(plain, 0, plen);
	free(plain);
	return ok;
}

/* The held ClientHello goes on to the terminator; the slot is free before it does. */
static void release(struct pending *p)
{
	struct shared_cache *c = p->c;
	struct sockaddr_storage from = p->from;
	struct tunnel *t = p->t;
	uint8_t hello[CACHE_HOLD_MAX];
	size_t len = p->len;
	bool alive = false;

	uv_timer_stop(&p->timer);
	p->used = false;
	p->gen++;
	memcpy(hello, p->hello, len);
	/* a reload may have closed the tunnel meanwhile */
	for (struct tunnel *x = c->d->tunnels; x && !alive; x = x->next)
		alive = x == t && !t->closing &&
			psktun_addr_equal((struct sockaddr *)&t->accept_addr, (struct sockaddr *)&p->accept_addr, true);
	if (!alive) {
		c->d->stats.dropped_closed++;
		return;
	}
	c->replaying++;
	terminator_client_hello(t, (struct sockaddr *)&from, hello, len);
	c->replaying--;
}

static void on_got(redisAsyncContext *ac, void *r, void *priv)
{
	struct lookup *q = priv;
	struct shared_cache *c = ac->data;
	redisReply *reply = r;
	struct pending *p;

	if (!c) {		/* a connection given up: its lookups wait out their time */
		free(q);
		return;
	}
	c->inflight--;
	if (!reply || reply->type == REDIS_REPLY_ERROR)
		c->d->stats.cache_errors++;
	else if (reply->type == REDIS_REPLY_STRING &&
		 take_value(c->d, q->rkey, q->sid, q->sid_len, (const uint8_t *)reply->str, reply->len))
		c->d->stats.cache_hits++;	/* late or not: the next ClientHello resumes */
	else
		c->d->stats.cache_misses++;	/* none, expired, or does not open */
	p = &c->slot[q->slot];
	if (p->used && p->gen == q->gen)
		release(p);
	free(q);
}

static void on_wait_over(uv_timer_t *h)
{
	struct pending *p = h->data;

	if (!p->used)
		return;
	p->c->d->stats.cache_timeouts++;
	release(p);
}

/* The session ID of a whole (unfragmented) ClientHello. */
static bool hello_session_id(const uint8_t *p, size_t len, const uint8_t **sid, size_t *sid_len)
{
	size_t off = DTLS_RECORD_HDR + 12 + 2 + 32;	/* record, handshake header, version, random */

	if (len < off + 1 || p[off] == 0 || p[off] > 32 || len < off + 1 + p[off])
		return false;
	if (p[DTLS_RECORD_HDR + 6] || p[DTLS_RECORD_HDR + 7] || p[DTLS_RECORD_HDR + 8] ||
	    memcmp(p + DTLS_RECORD_HDR + 1, p + DTLS_RECORD_HDR + 9, 3))
		return false;
	*sid = p + off + 1;
	*sid_len = p[off];
	return true;
}

bool shared_cache_hold(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len)
{
	struct daemon *d = t->d;
	struct shared_cache *c = d->cache;
	struct pending *p = NULL;
	const uint8_t *sid;
	struct lookup *q;
	size_t sid_len;

	if (!c || c->replaying || len > CACHE_HOLD_MAX || !hello_session_id(data, len, &sid, &sid_len) ||
	    dtls_server_cache_has(d, sid, sid_len))
		return false;
	for (unsigned i = 0; i < CACHE_PENDING; i++) {
		struct pending *x = &c->slot[i];

		if (x->used && x->t == t && x->sid_len == sid_len && !memcmp(x->sid, sid, sid_len) &&
		    psktun_addr_equal((struct sockaddr *)&x->from, from, true)) {
			memcpy(x->hello, data, len);	/* a retransmission: the newest copy waits */
			x->len = len;
			return true;
		}
		if (!x->used && !p)
			p = x;
	}
	if (!usable(c)) {
		d->stats.cache_errors++;
		return false;
	}
	if (!p) {
		d->stats.cache_overflow++;
		return false;
	}
	q = malloc(sizeof(*q));
	if (!q) {
		d->stats.cache_errors++;
		return false;
	}
	q->c = c;
	q->slot = (unsigned)(p - c->slot);
	q->gen = p->gen;
	memcpy(q->sid, sid, sid_len);
	q->sid_len = sid_len;
	redis_key(d, sid, sid_len, q->rkey);
	c->inflight++;
	if (redisAsyncCommand(c->ac, on_got, q, "GET %b", q->rkey, sizeof(q->rkey)) != REDIS_OK) {
		c->inflight--;
		free(q);
		d->stats.cache_errors++;
		return false;
	}
	p->used = true;
	p->t = t;
	memcpy(&p->accept_addr, &t->accept_addr, sizeof(p->accept_addr));
	memset(&p->from, 0, sizeof(p->from));
	memcpy(&p->from, from, psktun_addr_len(from));
	memcpy(p->sid, sid, sid_len);
	p->sid_len = sid_len;
	memcpy(p->hello, data, len);
	p->len = len;
	uv_timer_start(&p->timer, on_wait_over, CACHE_WAIT_MS, 0);
	return true;
}

#else	/* without hiredis: configuration refuses session_cache.redis (config.c) */

void shared_cache_show(struct daemon *d, const struct psktun_stats *sum, unsigned up, unsigned n,
		       struct text *t)
{
}

int shared_cache_start(struct daemon *d)
{
	return 0;
}

void shared_cache_stop(struct daemon *d)
{
}

void shared_cache_store(struct daemon *d, const gnutls_datum_t *sid, const gnutls_datum_t *data,
			const char *identity, size_t id_len, const uint8_t digest[32])
{
}

void shared_cache_remove(struct daemon *d, const gnutls_datum_t *sid)
{
}

bool shared_cache_hold(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len)
{
	return false;
}
#endif

/* dtls: GnuTLS over libuv UDP: credentials, priorities, cookies, push/pull for one session. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include "daemon.h"
#include "dtls.h"
#include "egress.h"
#include "file.h"
#include "hsslots.h"
#include "record.h"
#include "role.h"
#include "session.h"
#include "tunnel.h"
#include "seal.h"
#include "secmem.h"
#include "log.h"

/* One datagram toward the session's DTLS peer. */
static int send_datagram(struct session *s, const void *data, size_t len)
{
	struct tunnel *t = s->t;
	int r;

	if (t->ops->dtls_side == EGRESS_ACCEPT && !hs_slot_may_send(s, len)) {
		/* Its address is unproven (a ClientHello without our cookie)
		 * and this would send it more than three times what it sent:
		 * withheld, so a forged hello cannot aim us at a victim. A
		 * real peer that misses our flight sends its hello again. */
		t->d->stats.dropped_amplification++;
		return -EAGAIN;
	}
	r = egress_send(t, s, t->ops->dtls_side, NULL, data, len);
	if (r < 0) {
		/* A lost datagram: DTLS retransmits its handshake, the
		 * meter's protocol its requests. Counted, not fatal. */
		t->d->stats.dropped_send++;
		log_debug("tunnel %s: send to %s failed: %s", t->conf.name,
			  s->identity_len ? SESSION_ID(s) : "peer", strerror(-r));
	} else {
		s->air_out++;
		s->air_out_bytes += len;
	}
	return r;
}

static void flight_flush(struct daemon *d)
{
	if (d->flight.len)
		send_datagram(d->flight.s, d->flight.buf, d->flight.len);
	d->flight.len = 0;
}

/*
 * A handshake flight leaves as few datagrams as the MTU allows: GnuTLS hands
 * over one record per message (ServerHello, ServerHelloDone; ClientKeyExchange,
 * ChangeCipherSpec, Finished), and RFC 6347 4.1.1 lets records share a
 * datagram. A full handshake then takes 6 datagrams instead of 10, each
 * sparing 28 bytes of IP and UDP header on the radio and a trip through
 * both kernels. Retransmitted flights are gathered the same way.
 */
void dtls_flight_begin(struct session *s)
{
	struct daemon *d = s->t->d;

	flight_flush(d);
	d->flight.s = s;
}

void dtls_flight_end(struct session *s)
{
	struct daemon *d = s->t->d;

	if (d->flight.s != s)
		return;
	flight_flush(d);
	d->flight.s = NULL;
}

static ssize_t push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct session *s = ptr;
	struct daemon *d = s->t->d;
	const uint8_t *rec = data;

	if (s->state == SESSION_HANDSHAKING && len >= DTLS_RECORD_HDR && dtls_record_epoch(rec) > 0)
		s->sent_finished = true;	/* a record of the new epoch: our Finished */
	if (d->flight.s == s && len <= sizeof(d->flight.buf)) {
		if (d->flight.len + len > gnutls_dtls_get_mtu(s->tls))
			flight_flush(d);
		memcpy(d->flight.buf + d->flight.len, data, len);
		d->flight.len += len;
	} else if (send_datagram(s, data, len) < 0) {
		return len;
	}
	s->records_out++;
	d->stats.records_out++;
	return len;
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct session *s = ptr;
	size_t n;

	if (!s->in) {
		gnutls_transport_set_errno(s->tls, EAGAIN);
		return -1;
	}
	n = s->in_len < len ? s->in_len : len;
	memcpy(data, s->in, n);
	s->in = NULL;
	s->in_len = 0;
	return n;
}

/*
 * Never waits. "Nothing yet" must be a timeout (0), not EAGAIN: GnuTLS 3.7.9
 * retransmits a lost handshake flight, when our timer calls the handshake
 * again, only after this callback reports one; with EAGAIN it returns
 * GNUTLS_E_AGAIN and resends nothing. Record reads do not call it.
 */
static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct session *s = ptr;

	return s->in ? 1 : 0;
}

/* The daemon's own secrets, on pages of their own (secmem.h). */
struct dtls_secrets {
	uint8_t cookie[GNUTLS_COOKIE_KEY_SIZE];
	uint8_t ticket[64];
	uint8_t fake[32];
	struct psktun_seal_keys cache;	/* from session_cache.key_file */
};

void dtls_fake_key(struct daemon *d, const char *identity, size_t len, uint8_t *out, size_t out_len)
{
	uint8_t mac[32];

	gnutls_hmac_fast(GNUTLS_MAC_SHA256, d->fake_key_secret, sizeof(d->secrets->fake),
			 identity, len, mac);
	memcpy(out, mac, out_len < sizeof(mac) ? out_len : sizeof(mac));
	gnutls_memset(mac, 0, sizeof(mac));
}

/*
 * The terminator's PSK lookup. An unknown identity gets a key derived from
 * a per-process secret, so its handshake fails at Finished exactly as a
 * wrong key does: a peer cannot probe which identities exist.
 */
static int psk_server_key(gnutls_session_t tls, const gnutls_datum_t *username, gnutls_datum_t *key)
{
	struct session *s = gnutls_session_get_ptr(tls);
	struct daemon *d = s->t->d;
	const struct psktun_key *k = psktun_keys_find(d->keys, (const char *)username->data, username->size);
	size_t len = k ? k->key_len : PSKTUN_KEY_MIN;

	key->data = gnutls_malloc(len);
	if (!key->data)
		return -1;
	key->size = len;
	if (k) {
		memcpy(key->data, k->key, len);
	} else {
		dtls_fake_key(d, (const char *)username->data, username->size, key->data, len);
		s->unknown_identity = true;	/* for the log and `show`, never the wire */
	}
	return 0;
}

/*
 * A resumed ServerHello carries no extension GnuTLS resumes, heartbeat's
 * included, and GnuTLS's own record of it says yes whatever the server said
 * (heartbeat_offer): so the gateway's resumption data (the store, the state
 * file) ends with this mark when the session agreed to heartbeats. Data
 * without it (an older state file) resumes as before, without the probe.
 */
static const uint8_t HEARTBEAT_MARK[8] = { 'p', 's', 'k', 't', 'u', 'n', 'H', 'B' };

/* Gateway: keep what resumes this meter's next session (after idle close, rebinding or failure). */
void dtls_save_resumption(struct session *s)
{
	gnutls_datum_t data = { NULL, 0 }, marked;

	/* a full handshake: the ServerHello said; a resumed one: the mark did */
	if (!gnutls_session_is_resumed(s->tls) || s->heartbeat_hello)
		s->heartbeat = s->heartbeat_hello;
	if (gnutls_session_get_data2(s->tls, &data) < 0)
		return;
	if (s->heartbeat && (marked.data = malloc(data.size + sizeof(HEARTBEAT_MARK)))) {
		memcpy(marked.data, data.data, data.size);
		memcpy(marked.data + data.size, HEARTBEAT_MARK, sizeof(HEARTBEAT_MARK));
		marked.size = data.size + sizeof(HEARTBEAT_MARK);
	} else {
		marked = data;
	}
	resume_put(&s->t->resume, s->identity, s->identity_len, &marked, s->identity, s->identity_len,
		   s->key_digest, daemon_now_ms(s->t->d) / 1000);
	if (marked.data != data.data) {
		gnutls_memset(marked.data, 0, marked.size);
		free(marked.data);
	}
	gnutls_memset(data.data, 0, data.size);
	gnutls_free(data.data);
}

int dtls_priority_new(const struct psktun_conf_dtls *c, gnutls_priority_t *out, struct psktun_diag *diag)
{
	const char *priority = c->priority ? c->priority
			     : c->tickets ? PSKTUN_TICKETS_PRIORITY : PSKTUN_DEFAULT_PRIORITY;
	const char *err = NULL;
	int r = gnutls_priority_init(out, priority, &err);

	if (r < 0) {
		psktun_diag_add(diag, NULL, 0, "dtls.priority is not a valid GnuTLS priority string (%s at \"%s\")",
				gnutls_strerror(r), err ? err : "");
		return -EINVAL;
	}
	return 0;
}

int dtls_set_priority(struct daemon *d, const struct psktun_conf_dtls *c)
{
	struct psktun_diag diag;
	gnutls_priority_t p;
	int r;

	psktun_diag_init(&diag);
	r = dtls_priority_new(c, &p, &diag);
	for (size_t i = 0; i < diag.n && i < PSKTUN_DIAG_MAX; i++)
		log_err("%s", diag.line[i]);
	psktun_diag_deinit(&diag);
	if (r < 0)
		return r;
	if (d->priority)
		gnutls_priority_deinit(d->priority);
	d->priority = p;
	return 0;
}

int dtls_global_init(struct daemon *d, const struct psktun_config *cfg)
{
	int r;

	r = gnutls_global_init();
	if (r < 0)
		goto fail;
	r = dtls_set_priority(d, &cfg->dtls);
	if (r < 0)
		return r;
	d->secrets = psktun_secmem_alloc(sizeof(*d->secrets));
	if (!d->secrets) {
		log_err("no memory for the DTLS secrets");
		return -ENOMEM;
	}
	d->cookie_key = (gnutls_datum_t){ d->secrets->cookie, sizeof(d->secrets->cookie) };
	d->fake_key_secret = d->secrets->fake;
	if (cfg->dtls.tickets && cfg->mode == PSKTUN_MODE_TERMINATOR) {
		struct psktun_diag diag;

		d->ticket_key = (gnutls_datum_t){ d->secrets->ticket, sizeof(d->secrets->ticket) };
		psktun_diag_init(&diag);
		r = cfg->dtls.ticket_key_file ? dtls_ticket_key_load(cfg->dtls.ticket_key_file, &d->ticket_key, &diag)
					      : gnutls_rnd(GNUTLS_RND_KEY, d->ticket_key.data, d->ticket_key.size);
		for (size_t i = 0; i < diag.n && i < PSKTUN_DIAG_MAX; i++)
			log_err("%s", diag.line[i]);
		psktun_diag_deinit(&diag);
		if (r < 0)
			return -EINVAL;
	}
	if (cfg->cache.key_file) {
		struct psktun_diag diag;
		uint8_t master[PSKTUN_CACHE_KEY_LEN];

		psktun_diag_init(&diag);
		r = psktun_hexkey_load(cfg->cache.key_file, "cache key", master, sizeof(master), &diag);
		for (size_t i = 0; i < diag.n && i < PSKTUN_DIAG_MAX; i++)
			log_err("%s", diag.line[i]);
		psktun_diag_deinit(&diag);
		if (r < 0)
			return -EINVAL;
		psktun_seal_keys_derive(master, sizeof(master), &d->secrets->cache);
		gnutls_memset(master, 0, sizeof(master));
		d->cache_keys = &d->secrets->cache;
	}
	r = gnutls_psk_allocate_server_credentials(&d->server_cred);
	if (r < 0)
		goto fail;
	gnutls_psk_set_server_credentials_function2(d->server_cred, psk_server_key);
	r = gnutls_rnd(GNUTLS_RND_KEY, d->cookie_key.data, d->cookie_key.size);
	if (r < 0)
		goto fail;
	r = gnutls_rnd(GNUTLS_RND_KEY, d->fake_key_secret, sizeof(d->secrets->fake));
	if (r < 0)
		goto fail;
	if (hs_sources_init(&d->hs_sources) < 0) {
		log_err("out of memory");
		return -ENOMEM;
	}
	return 0;
fail:
	log_err("GnuTLS setup failed: %s", gnutls_strerror(r));
	return -EIO;
}

/*
 * The ticket master key: 64 bytes as 128 hex digits (whitespace ignored),
 * from a file only the daemon may read, like the key file. GnuTLS derives
 * rotating ticket keys from it, so terminators that share the file rotate in
 * step and accept each other's tickets. `head -c 64 /dev/urandom | xxd -p -c 64`.
 */
int dtls_ticket_key_load(const char *path, gnutls_datum_t *out, struct psktun_diag *diag)
{
	uint8_t key[64];
	int r = psktun_hexkey_load(path, "ticket key", key, sizeof(key), diag);

	if (r < 0)
		return r;
	if (!out->data || out->size != sizeof(key))
		out->data = gnutls_malloc(sizeof(key));
	if (!out->data) {
		gnutls_memset(key, 0, sizeof(key));
		return -ENOMEM;
	}
	memcpy(out->data, key, sizeof(key));
	out->size = sizeof(key);
	gnutls_memset(key, 0, sizeof(key));
	return 0;
}

void dtls_global_deinit(struct daemon *d)
{
	if (d->priority)
		gnutls_priority_deinit(d->priority);
	d->priority = NULL;
	if (d->server_cred)
		gnutls_psk_free_server_credentials(d->server_cred);
	d->server_cred = NULL;
	psktun_secmem_free(d->secrets, sizeof(*d->secrets));	/* zeroes them */
	d->secrets = NULL;
	d->cookie_key = (gnutls_datum_t){ NULL, 0 };
	d->ticket_key = (gnutls_datum_t){ NULL, 0 };
	d->fake_key_secret = NULL;
	d->cache_keys = NULL;
	hs_sources_deinit(&d->hs_sources);
	gnutls_global_deinit();
}

static int session_common(struct session *s)
{
	const struct psktun_conf_dtls *c = &s->t->d->cfg->dtls;
	int r;

	r = gnutls_priority_set(s->tls, s->t->d->priority);
	if (r < 0)
		return r;
	gnutls_session_set_ptr(s->tls, s);
	gnutls_transport_set_ptr(s->tls, s);
	gnutls_transport_set_push_function(s->tls, push);
	gnutls_transport_set_pull_function(s->tls, pull);
	gnutls_transport_set_pull_timeout_function(s->tls, pull_timeout);
	gnutls_dtls_set_mtu(s->tls, c->mtu);
	gnutls_dtls_set_timeouts(s->tls, c->retransmit_ms, c->handshake_timeout_s * 1000);
	return 0;
}

/*
 * The gateway's PSK, handed to GnuTLS only while it computes the premaster
 * secret (it zeroes and frees the copy then): credentials set with the key
 * would keep a copy on GnuTLS's heap, in every core dump, for the session's
 * life. The key is the one the session started with (its digest), or none.
 */
static int psk_client_key(gnutls_session_t tls, gnutls_datum_t *username, gnutls_datum_t *key)
{
	struct session *s = gnutls_session_get_ptr(tls);
	const struct psktun_key *k = psktun_keys_find(s->t->d->keys, s->identity, s->identity_len);
	uint8_t digest[32];

	if (!k)
		return -1;
	dtls_key_digest(k, digest);
	if (memcmp(digest, s->key_digest, sizeof(digest)))
		return -1;
	username->data = gnutls_malloc(k->identity_len + 1);
	key->data = gnutls_malloc(k->key_len);
	if (!username->data || !key->data) {
		gnutls_free(username->data);
		gnutls_free(key->data);
		username->data = key->data = NULL;
		return -1;
	}
	memcpy(username->data, k->identity, k->identity_len + 1);
	username->size = k->identity_len;
	memcpy(key->data, k->key, k->key_len);
	key->size = k->key_len;
	return 0;
}

/*
 * The dead-path probe (session.c) pings with RFC 6520 heartbeats. GnuTLS
 * 3.7.9 reports the local side allowed to send once enabled, whether or not
 * the server answered the extension (a server that never agreed takes a ping
 * as a fatal unexpected message), and takes a pong only from a peer allowed to
 * send: so both directions are enabled, and only the ServerHello says whether
 * the probe may be used: the extension with peer_allowed_to_send (a server
 * saying peer_not_allowed_to_send must not be sent a request, RFC 6520 2).
 */
static int server_hello_seen(gnutls_session_t tls, unsigned type, unsigned when, unsigned incoming,
			     const gnutls_datum_t *msg)
{
	struct session *s = gnutls_session_get_ptr(tls);

	if (!incoming || type != GNUTLS_HANDSHAKE_SERVER_HELLO)
		return 0;
	s->heartbeat_hello = dtls_server_hello_allows_heartbeats(msg->data, msg->size);
	return 0;
}

/* The gateway's probe is on (dtls.path_timeout_s): offer heartbeats. `marked`:
 * the resumption data says the session it resumes agreed to them. */
static void heartbeat_offer(struct session *s, bool marked)
{
	s->heartbeat = s->heartbeat_hello = false;
	if (!s->t->d->cfg->dtls.path_timeout_s || !s->t->ops->keeps_uplink)
		return;
	s->heartbeat = marked;
	gnutls_heartbeat_enable(s->tls, GNUTLS_HB_LOCAL_ALLOWED_TO_SEND | GNUTLS_HB_PEER_ALLOWED_TO_SEND);
	gnutls_handshake_set_hook_function(s->tls, GNUTLS_HANDSHAKE_SERVER_HELLO, GNUTLS_HOOK_POST,
					   server_hello_seen);
}

/*
 * One heartbeat request: 1 byte of payload (GnuTLS fails on none) and the
 * 16 bytes of padding RFC 6520 asks for, 49 bytes on the air with
 * AES-128-CCM-8, as its answer. Each call sends a new payload: an answer to an
 * earlier one is ignored.
 */
int dtls_heartbeat_ping(struct session *s)
{
	int r = gnutls_heartbeat_ping(s->tls, 16 + 1, 0, 0);

	return r < 0 ? -EIO : 0;
}

int dtls_session_client(struct session *s, const struct psktun_key *key)
{
	const gnutls_datum_t *resumption;
	int r;

	dtls_session_deinit(s);
	r = gnutls_init(&s->tls, GNUTLS_CLIENT | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK);
	if (r < 0)
		goto fail;
	r = gnutls_psk_allocate_client_credentials(&s->client_cred);
	if (r < 0)
		goto fail;
	gnutls_psk_set_client_credentials_function2(s->client_cred, psk_client_key);
	r = gnutls_credentials_set(s->tls, GNUTLS_CRD_PSK, s->client_cred);
	if (r < 0)
		goto fail;
	r = session_common(s);
	if (r < 0)
		goto fail;
	resumption = resume_get(&s->t->resume, key->identity, key->identity_len, s->t->d->keys,
				daemon_now_ms(s->t->d) / 1000);
	if (resumption) {
		size_t n = resumption->size;
		bool marked = n > sizeof(HEARTBEAT_MARK) &&
			      !memcmp(resumption->data + n - sizeof(HEARTBEAT_MARK), HEARTBEAT_MARK,
				      sizeof(HEARTBEAT_MARK));

		gnutls_session_set_data(s->tls, resumption->data, marked ? n - sizeof(HEARTBEAT_MARK) : n);
		heartbeat_offer(s, marked);
	} else {
		heartbeat_offer(s, false);
	}
	return 0;
fail:
	log_err("tunnel %s: cannot set up a DTLS session for %s: %s", s->t->conf.name,
		SESSION_ID(s), gnutls_strerror_name(r));
	dtls_session_deinit(s);
	return -EIO;
}

int dtls_session_server(struct session *s, gnutls_dtls_prestate_st *prestate)
{
	int r;

	r = gnutls_init(&s->tls, GNUTLS_SERVER | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK);
	if (r < 0)
		goto fail;
	r = gnutls_credentials_set(s->tls, GNUTLS_CRD_PSK, s->t->d->server_cred);
	if (r < 0)
		goto fail;
	r = session_common(s);
	if (r < 0)
		goto fail;
	/* Answer a gateway's probe; nothing is sent unless the client offers it. */
	gnutls_heartbeat_enable(s->tls, GNUTLS_HB_PEER_ALLOWED_TO_SEND);
	if (prestate)
		gnutls_dtls_prestate_set(s->tls, prestate);
	if (s->t->d->ticket_key.data)
		gnutls_session_ticket_enable_server(s->tls, &s->t->d->ticket_key);
	return 0;
fail:
	log_err("tunnel %s: cannot set up a DTLS session: %s", s->t->conf.name, gnutls_strerror_name(r));
	dtls_session_deinit(s);
	return -EIO;
}

void dtls_session_deinit(struct session *s)
{
	if (s->tls)
		gnutls_deinit(s->tls);
	s->tls = NULL;
	if (s->client_cred)
		gnutls_psk_free_client_credentials(s->client_cred);
	s->client_cred = NULL;
}

bool dtls_is_client(const struct session *s)
{
	return s->client_cred != NULL;
}

/*
 * The most plaintext one record can carry. Once a suite is agreed GnuTLS
 * knows exactly; before, the configured MTU less the record header and the
 * smallest overhead of any suite is a bound nothing larger can ever pass.
 */
size_t dtls_plain_max(const struct session *s)
{
	unsigned mtu = s->t->d->cfg->dtls.mtu;

	if (s->state == SESSION_ESTABLISHED && s->tls)
		return gnutls_dtls_get_data_mtu(s->tls);
	return mtu > DTLS_RECORD_HDR + DTLS_OVERHEAD_MIN ? mtu - DTLS_RECORD_HDR - DTLS_OVERHEAD_MIN : 0;
}

/* Overwrites the stack below the caller's frame, where a callee just worked. */
static void __attribute__((noinline)) scrub_stack_below(void)
{
	uint8_t area[16384];

	explicit_bzero(area, sizeof(area));
	__asm__ __volatile__("" : : "r"(area) : "memory");
}

/*
 * gnutls_hash_fast hashes on the stack: the key's bytes stay in its frames
 * (nettle's block buffer) below ours until something else happens to
 * overwrite them, and a core dump would find them there (test_core_dump saw
 * it once handshakes started from the loop's check phase, a shallow stack
 * that nothing deeper reaches later). So that region is overwritten now.
 */
void dtls_key_digest(const struct psktun_key *key, uint8_t out[32])
{
	gnutls_hash_fast(GNUTLS_DIG_SHA256, key->key, key->key_len, out);
	scrub_stack_below();
}

/* meters: what `psktunctl show` reports: a small record per meter that outlives its sessions,
 * the recent unknown sources and identities, why handshakes fail, and rate-limited log lines. */
#ifndef PSKTUN_METERS_H
#define PSKTUN_METERS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Why a handshake failed (or was refused): X(slug, terminator text, gateway text).
 * The slug is what `show --dump` and the metrics' reason label carry; the
 * texts are the log's and `show`'s. Shared with psktunctl.
 */
#define PSKTUN_FAILURES(X) \
	X(unknown_identity, "unknown identity", "unknown identity") \
	X(wrong_key, "the client's Finished did not verify: wrong key?", \
	  "our Finished was not accepted: wrong key?") \
	X(silent, "the client went silent after the cookie", \
	  "the server stopped answering during the handshake") \
	X(no_answer, "no answer from the client", "no answer from the server") \
	X(too_many_handshakes, "too many handshakes", "too many handshakes") \
	X(no_cipher_suite, "no cipher suite in common (handshake_failure alert sent)", \
	  "no cipher suite in common") \
	X(peer_alert, "the client ended the handshake", "the server ended the handshake") \
	X(resolve, "cannot resolve the backend", "cannot resolve the server") \
	X(error, "handshake error", "handshake error")

enum psktun_failure {
#define X(slug, t, g) PSKTUN_FAIL_##slug,
	PSKTUN_FAILURES(X)
#undef X
	PSKTUN_FAIL_MAX
};

const char *psktun_failure_slug(enum psktun_failure f);
const char *psktun_failure_text(enum psktun_failure f, bool gateway);

#ifdef PSKTUN_DAEMON_H
/* The daemon's side (needs daemon.h first). */

#define METER_UNKNOWN_MAX 16	/* recent unknown sources/identities a tunnel remembers */
#define LOGLIMIT_SLOTS 256	/* sources/identities whose last log line a tunnel remembers */
#define LOGLIMIT_INTERVAL_MS 60000	/* one line a source a minute */
#define LOGLIMIT_PER_MINUTE 120		/* and this many a tunnel a minute at most */

/* Traffic and handshake counters of one meter, summed over its sessions. */
struct meter_counters {
	uint64_t air_in_bytes, air_in, air_out_bytes, air_out;		/* DTLS datagrams */
	uint64_t plain_in_bytes, plain_in, plain_out_bytes, plain_out;	/* the meter's/backend's side */
};

/* One identity in the key file, once seen: survives its sessions, freed when
 * the identity leaves the key file (reload) or the tunnel closes. */
struct meter_rec {
	struct htab_node node;
	char identity[PSKTUN_IDENTITY_MAX + 1];
	size_t identity_len;
	struct sockaddr_storage peer;	/* latest address */
	uint64_t seen_ms;		/* last datagram from it (0: never) */
	uint64_t handshake_ms;		/* latest completed handshake (0: none) */
	bool resumed;
	uint64_t handshakes, failures;
	enum psktun_failure last_failure;
	char failure_detail[48];	/* an alert or GnuTLS error name */
	uint64_t failure_ms;		/* 0: none */
	struct meter_counters c;	/* of its closed sessions */
	size_t row;			/* scratch for show_rows_collect */
};

enum meter_unknown_kind { UNKNOWN_SOURCE, UNKNOWN_IDENTITY };

struct meter_unknown {
	enum meter_unknown_kind kind;
	char name[PSKTUN_IDENTITY_MAX + 1];	/* the identity (UNKNOWN_IDENTITY) */
	size_t name_len;
	struct sockaddr_storage addr;	/* the latest source */
	uint64_t count, last_ms;	/* last_ms 0: a free slot */
};

/* Log lines a source may cause: one a minute each, LOGLIMIT_PER_MINUTE a tunnel. */
struct loglimit {
	struct {
		uint64_t key, last_ms, suppressed;
	} slot[LOGLIMIT_SLOTS];
	uint64_t window_ms;
	unsigned in_window;
	uint64_t suppressed;		/* by the per-tunnel cap */
};

/* May a line about `key` (a source, an identity and reason) be logged at now_ms?
 * *suppressed: the lines about it held back since its last one. */
bool psktun_loglimit_take(struct loglimit *ll, uint64_t key, uint64_t now_ms, uint64_t *suppressed);

struct meter_table {
	struct htab by_identity;
	size_t n;
	struct meter_unknown unknown[METER_UNKNOWN_MAX];
	struct loglimit log;
	/* terminator: ClientHellos (address, random) whose handshake failed, so a
	 * client's retransmissions count once and get the same answer */
	struct {
		struct sockaddr_storage addr;
		uint8_t random[32];
		bool used;
	} failed_hello[16];
	unsigned failed_hello_next;
};

struct daemon;
struct tunnel;
struct session;

struct meter_table *meter_table_new(void);
void meter_table_free(struct meter_table *mt);
/* The record of a key-file identity (created at first sight); NULL for others. */
struct meter_rec *meter_get(struct tunnel *t, const char *identity, size_t len);
/* After a reload: forget identities no longer in the key file (all of them,
 * looking each record up; or the one given, when a reload knows which went). */
void meter_table_prune(struct tunnel *t);
void meter_forget(struct tunnel *t, const char *identity, size_t len);

/* A session's identity: set, or (terminator, handshaking) the one its client named. */
size_t session_named_identity(struct session *s, char *out, size_t cap);
/* A session ends or its transport is reset: its counters go to its meter's record. */
void meter_session_fold(struct session *s);
void meter_established(struct session *s);
/* A handshake failed; logs the reason (rate-limited). repeat: a retransmitted
 * ClientHello of a handshake already failed: not counted or logged again. */
void meter_handshake_failed(struct session *s, enum psktun_failure why, const char *detail,
			    const char *tail);
/* Refused or unknown: counted, remembered for `show`, logged rate-limited. */
void meter_refused(struct tunnel *t, const struct sockaddr *from, enum psktun_failure why,
		   const char *detail);
void meter_unknown_seen(struct tunnel *t, enum meter_unknown_kind kind, const char *name, size_t len,
			const struct sockaddr *from, const char *what);

/* Terminator: a failed handshake's ClientHello; was this one seen failing? */
void meter_hello_failed(struct tunnel *t, const struct sockaddr *from, const uint8_t random[32]);
bool meter_hello_repeat(struct tunnel *t, const struct sockaddr *from, const uint8_t random[32]);

/* `show`: this daemon's (worker's) rows, then the leader's merged text. */
struct show_rows;
struct show_rows *show_rows_collect(struct daemon *d);
void show_rows_free(struct show_rows *r);
/* rows: one per worker; returns the dump text (malloc'd, *len). */
char *show_text(struct daemon *d, struct show_rows **rows, unsigned n, size_t *len);
#endif
#endif

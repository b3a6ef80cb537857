/* session: one meter's DTLS session (struct session) and its life; role-free (role.h says where roles differ). */
#ifndef PSKTUN_SESSION_H
#define PSKTUN_SESSION_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <gnutls/gnutls.h>
#include <uv.h>
#include "failure.h"
#include "hsslots.h"
#include "htab.h"
#include "keys.h"
#include "log.h"
#include "queue.h"

struct daemon;
struct tunnel;
struct session_sock;

enum session_state {
	SESSION_NEW,		/* created, nothing sent yet */
	SESSION_RESOLVING,	/* gateway: waiting for the DNS answer for `connect` */
	SESSION_HANDSHAKING,
	SESSION_ESTABLISHED,
	SESSION_BACKOFF,	/* gateway: a handshake failed; waiting before the next */
	SESSION_CLOSING,	/* handles closing; freed when the last one is closed */
};

static inline const char *session_state_name(enum session_state st)
{
	switch (st) {
	case SESSION_NEW: return "new";
	case SESSION_RESOLVING: return "resolving";
	case SESSION_HANDSHAKING: return "handshaking";
	case SESSION_ESTABLISHED: return "established";
	case SESSION_BACKOFF: return "backoff";
	case SESSION_CLOSING: return "closing";
	}
	return "?";
}

/* A session's identity as one token for a log line (log.h: psktun_quote); the
 * buffer lives until the end of the enclosing block. */
#define SESSION_ID(s) psktun_quote((s)->identity, (s)->identity_len, \
	(char[PSKTUN_QUOTED_MAX(PSKTUN_IDENTITY_MAX)]){ 0 }, PSKTUN_QUOTED_MAX(PSKTUN_IDENTITY_MAX))

/* Why a session ends, for the log line and counters. */
enum close_reason {
	CLOSE_IDLE,
	CLOSE_PEER,		/* close_notify or fatal alert from the peer */
	CLOSE_ERROR,
	CLOSE_SHUTDOWN,
	CLOSE_RELOAD,
	CLOSE_REPLACED,
	CLOSE_PLUGIN,
	CLOSE_HANDSHAKE,	/* terminator: a handshake that failed */
	CLOSE_UNUSED,		/* gateway: created for a datagram a plugin answered locally */
};

/*
 * One DTLS session: one meter on one tunnel. On a gateway it owns a UDP
 * socket toward the tunnel's `connect`; on a terminator it owns a UDP
 * socket toward the backend (unless the tunnel uses a shared plain socket).
 */
struct session {
	struct tunnel *t;
	struct session *prev, *next;	/* tunnel's list of sessions */
	struct htab_node by_identity;	/* tunnel->by_identity (gateway: all; terminator: established) */
	struct htab_node by_peer;	/* terminator: tunnel->by_peer */
	bool in_by_identity, in_by_peer;

	enum session_state state;
	char identity[PSKTUN_IDENTITY_MAX + 1];
	size_t identity_len;
	uint8_t key_digest[32];		/* SHA-256 of the key, to see a changed key on reload */

	gnutls_session_t tls;
	gnutls_psk_client_credentials_t client_cred;	/* gateway */

	struct session_sock *sock;	/* gateway: toward the cloud (a fresh one per handshake);
					 * terminator: toward the backend; NULL: none */
	struct session *wait_next;	/* daemon's queue of sessions waiting for a handshake slot */
	bool waiting;
	uv_timer_t timer;		/* handshake retransmission, idle, backoff */
	uv_timer_t *plugin_timer;	/* lazily, for host->session_timer */
	unsigned open_handles;		/* handles still to see their close callback */

	struct sockaddr_storage peer;	/* gateway: the meter's latest address; terminator: the DTLS peer */
	const uint8_t *in;		/* the datagram GnuTLS may pull now */
	size_t in_len;

	struct dgram_queue queue;	/* plaintext waiting for the handshake */
	struct dgram_queue sent;	/* gateway: uplink sent since the last authenticated downlink */
	struct dgram_budget sent_budget;	/* its bytes: at most REPLAY_BYTES (session.c) */
	unsigned failures;		/* consecutive failed handshakes */
	uint64_t started_ms;		/* handshake start */
	uint64_t last_rx_ms;		/* last datagram in either direction */
	uint64_t last_uplink_ms, last_downlink_ms;
	uint64_t unanswered_since_ms;	/* first uplink record since the last downlink one */
	bool awaiting_downlink;		/* an uplink record since the last authenticated downlink one */
	uint64_t rehandshake_ms;	/* last rehandshake, to ignore a burst of hints */
	bool heartbeat;			/* gateway: the cloud agreed to RFC 6520 heartbeats (dtls.c) */
	bool heartbeat_hello;		/* ... its ServerHello said so (a resumed one never does) */
	uint8_t probe_tries;		/* heartbeats sent for the unanswered uplink (session.c: probe) */
	uint64_t probe_at_ms;		/* when the probe acts next; 0: it waits for an uplink */
	uint32_t idle_timeout_s;
	bool closing_after_send;	/* plugin asked to close after forwarding */
	bool counted_handshaking;
	int16_t alert_ignored;		/* a plaintext alert a handshake holds (session_on_record), or -1 */
	int alert_last_in;		/* the handshake's last message in when it came */
	uint64_t alert_ms;		/* when it came */

	struct hs_slot slot;		/* terminator: its handshake slot, whether its address is proven */
	struct session *replaces;	/* terminator: the established session this one will replace */
	struct session *replaced_by;

	void *plugin_data;
	bool plugin_open;
	uint8_t plugin_deferred;	/* PLUGIN_DEFER_*: asked for during a callback (plugin.c) */
	struct session *plugin_deferred_next;

	uint64_t plain_in, plain_out, records_in, records_out;
	/* for `show` (meters.c): bytes and datagrams on the air (DTLS, UDP
	 * payload) and on the plain side; what one handshake saw, for its reason */
	uint64_t air_in_bytes, air_in, air_out_bytes, air_out, plain_in_bytes, plain_out_bytes;
	bool heard_peer;		/* a datagram from the DTLS peer this handshake */
	bool peer_finished;		/* records of a new epoch came in (the peer's Finished) */
	bool sent_finished;		/* we sent records of a new epoch (our Finished) */
	bool unreachable;		/* ICMP: nobody listens at the peer's address */
	bool unknown_identity;		/* terminator: the client named an identity not in the key file */
	bool repeat;			/* terminator: a retransmitted ClientHello of a failed handshake */
	bool has_random;
	uint8_t hello_random[32];	/* terminator: the client's ClientHello.random */
};

struct session *session_new(struct tunnel *t, const char *identity, size_t len);
void session_close(struct session *s, enum close_reason why);
/* Asks for a handshake: the session waits its turn (max_handshakes), the oldest first. */
void session_request_handshake(struct session *s);
/* A handshake begins now: it holds one of max_handshakes' slots until it ends. */
void session_handshake_begin(struct session *s);
/* It failed: counted, its slot released; the role (role.h) backs off or closes. */
void session_handshake_failed(struct session *s, enum psktun_failure why, const char *detail);
/* The role's back-off: the failed attempt's socket and GnuTLS state go; after `ms`, again. */
void session_back_off(struct session *s, uint32_t ms);
void session_set_state(struct session *s, enum session_state st);
void session_handshake_step(struct session *s);
void session_on_record(struct session *s, const uint8_t *data, size_t len);
int session_send_tunnel(struct session *s, const uint8_t *data, size_t len);
void session_touch(struct session *s);
void session_set_idle(struct session *s, uint32_t seconds);
void session_report_silent(struct session *s);
void session_rehandshake(struct session *s);
void session_replay_sent(struct session *s);
void session_wait_next_start(struct daemon *d);
void session_starter_close(struct daemon *d);
struct session *session_find_identity(struct tunnel *t, const char *identity, size_t len);
static inline uint64_t identity_hash(const char *identity, size_t len)
{
	return psktun_hash(identity, len);
}

/* Close callbacks that drop one of the session's references (open_handles). */
void handle_closed_free_session(uv_handle_t *h);
void session_sock_closed(void *session);	/* a done callback for session_sock_close */
#endif

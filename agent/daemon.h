/* daemon: the runtime objects (daemon, tunnel, session) shared by the agent's event-loop code. */
#ifndef PSKTUN_DAEMON_H
#define PSKTUN_DAEMON_H
#include <stdbool.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include <gnutls/dtls.h>
#include <uv.h>
#include "config.h"
#include "hsslots.h"
#include "htab.h"
#include "keys.h"
#include "log.h"
#include "queue.h"
#include "ratelimit.h"
#include "rxsock.h"
#include "record.h"
#include "sendbatch.h"
#include "sessionsock.h"
#include "uring.h"
#include "resume.h"
#include "seal.h"
#include "stats.h"
#include "meters.h"
#include "psktun/plugin.h"

#define PSKTUN_DGRAM_MAX 65536	/* the largest UDP payload we read; libuv's recvmmsg chunk */
#define PSKTUN_RX_BATCH 8	/* datagrams one recvmmsg takes from a tunnel's shared socket */
#define PSKTUN_RCVBUF (4 << 20)	/* receive buffer of a tunnel's shared socket: a burst of meters */

struct daemon;
struct tunnel;
struct plugin;

enum session_state {
	SESSION_NEW,		/* created, nothing sent yet */
	SESSION_RESOLVING,	/* gateway: waiting for the DNS answer for `connect` */
	SESSION_HANDSHAKING,
	SESSION_ESTABLISHED,
	SESSION_BACKOFF,	/* gateway: a handshake failed; waiting before the next */
	SESSION_CLOSING,	/* handles closing; freed when the last one is closed */
};

const char *session_state_name(enum session_state st);

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

struct tunnel {
	struct daemon *d;
	struct tunnel *next;
	struct psktun_conf_tunnel conf;	/* deep copy, owned */
	enum psktun_mode mode;

	uv_udp_t sock;			/* accept: gateway plaintext from meters; terminator DTLS */
	bool sock_open;
	struct rxsock *rx;		/* reads `sock` from tunnel_start on */
	struct sendbatch *batch;	/* what leaves `sock` this loop iteration */
	struct sockaddr_storage accept_addr;

	/* `connect`, resolved with libuv (again after a failure) */
	char connect_host[256], connect_port[16];
	struct sockaddr_storage connect_addr;
	bool connect_resolved, resolving;
	uint64_t resolved_ms;
	uv_getaddrinfo_t resolve_req;

	struct session *sessions;	/* every session of this tunnel */
	unsigned n_sessions;
	struct htab by_identity;
	struct htab by_peer;		/* terminator */
	struct htab bindings;		/* gateway: source -> identity */
	struct htab pinned;		/* gateway: identity -> its `meters` bindings */
	struct binding *learned;	/* gateway: learned bindings, newest first */
	struct resume_store resume;	/* gateway: by identity; terminator: by session ID */
	struct ratelimit *hs_rate;	/* terminator: handshakes per source IP */
	struct ratelimit *alert_rate;	/* terminator: "no such session" alerts per source IP */
	unsigned n_learned;

	const struct plugin *plugin;
	void *plugin_data;
	uv_timer_t *plugin_timer;
	uint32_t plugin_timer_ms;	/* armed before tunnel_start: started then */
	uv_udp_t *shared_plain;		/* terminator: use_shared_plain() */
	struct sockaddr_storage shared_addr;

	uv_udp_recv_cb on_recv;		/* the role's, for `sock` from tunnel_start on */
	bool started;			/* receiving: a reload's new tunnel is not until it commits */
	bool retiring;			/* a reload being prepared will close it */
	bool sock_handed, shared_handed;	/* ... and its replacement shares these sockets */
	struct tunnel *sock_handed_to;	/* that replacement: it counts the socket's drops on from ours */

	unsigned open_handles;
	bool closing;
	struct meter_table *meters;	/* `show`: records per meter, recent unknowns, log limits */
};

struct reload;
struct reload_load;

struct daemon {
	uv_loop_t *loop;
	struct psktun_config *cfg;
	struct psktun_keys *keys;
	struct tunnel *tunnels;
	struct psktun_stats stats;
	uint64_t failures[PSKTUN_FAIL_MAX];	/* handshake failures by reason */
	struct show_rows *show_rows;	/* a worker's `show` rows, for the leader */
	unsigned n_sessions;		/* all tunnels */
	unsigned n_handshaking;

	gnutls_priority_t priority;
	gnutls_psk_server_credentials_t server_cred;
	/* The three point into `secrets`: pages out of core dumps (secmem.h). */
	struct dtls_secrets *secrets;
	gnutls_datum_t cookie_key;
	gnutls_datum_t ticket_key;	/* terminator with dtls.tickets: the master ticket key */
	uint8_t *fake_key_secret;	/* 32 bytes; unknown identities get a key derived from this */
	const struct psktun_seal_keys *cache_keys;	/* session_cache.key_file's, or NULL */
	struct shared_cache *cache;	/* session_cache.redis (cache.c), or NULL */
	bool cache_up;			/* ... connected (read by the leader's stats) */

	/* Workers (terminator, `workers` > 1): threads with a loop each. Worker 0
	 * (the leader) owns signals and the control socket and tells the others,
	 * through their `wake` handles, to reload, stop or list their sessions. */
	unsigned worker;
	struct daemon *leader;		/* NULL in the leader */
	struct daemon **all;		/* leader: every worker, itself first */
	unsigned n_all;
	uv_async_t wake;
	bool wake_open;
	unsigned cmd;			/* WORKER_* bits, set by another thread */
	char *dump;			/* a worker's `sessions` text, for the leader */
	size_t dump_len;
	bool dump_ready;
	bool reuseport;			/* shared sockets join an SO_REUSEPORT group */
	uv_sem_t *started;		/* a worker posts it once its sockets are bound */
	int start_result;

	/* A reload is prepared (everything that can fail: configuration, keys,
	 * plugin options, new sockets, new plugin tunnels), then committed or
	 * rolled back. With workers the leader prepares first, then each worker;
	 * only when all have prepared does any commit (daemon.c). */
	struct reload *reload;		/* prepared, not yet committed */
	struct reload_load *reload_load;	/* configuration and keys being read off the loop */
	int reload_phase;		/* leader: RELOAD_* (daemon.c) */
	bool reload_again;		/* leader: asked again while one ran */
	unsigned reload_seq;		/* leader: reloads started so far */
	int reload_state;		/* worker -> leader, atomic: WSTATE_* (daemon.c) */
	unsigned reload_kept, reload_closed;	/* sessions, by the last commit */
	char reload_why[512];		/* the last prepare's failure, one line */

	uv_signal_t sig_hup, sig_term, sig_int;
	uv_pipe_t control;
	bool control_open;
	bool stopping;
	int exit_code;

	struct session *wait_head, *wait_tail;	/* waiting for a handshake slot (max_handshakes) */
	uv_check_t starter_check;	/* ... started from here (session.c: start_turn) */
	uv_idle_t starter_idle;
	bool starter_open;
	struct hs_sources hs_sources;	/* terminator: who holds the handshake slots */
	struct dgram_budget queue_budget;	/* every session's handshake queue: dtls.queue_bytes */
	struct sockset sockset;		/* every session's own socket */
	struct uring_tx *uring;		/* their sends, through io_uring; NULL: system calls */
	struct {			/* the handshake flight being gathered (dtls.c) */
		struct session *s;
		size_t len;
		uint8_t buf[PSKTUN_DGRAM_MAX];
	} flight;

	/* The one receive buffer (one loop, one thread): PSKTUN_RX_BATCH chunks of
	 * PSKTUN_DGRAM_MAX for a shared socket's recvmmsg, the first for the rest.
	 * A plugin rewrites a datagram in place within its chunk. */
	uint8_t rxbuf[PSKTUN_RX_BATCH * PSKTUN_DGRAM_MAX];
	uint8_t txbuf[PSKTUN_DGRAM_MAX + 512];	/* decrypted plaintext, plugin rewrites */
};

#define WORKER_PREPARE 1u	/* leader -> worker: prepare a reload */
#define WORKER_STOP 2u
#define WORKER_DUMP 4u		/* leader -> worker: list your sessions */
#define WORKER_DUMPED 8u	/* worker -> leader: done */
#define WORKER_COMMIT 16u	/* leader -> worker: apply the prepared reload */
#define WORKER_ABORT 32u	/* leader -> worker: drop it */
#define WORKER_ACK 64u		/* worker -> leader: reload_state has changed */

/* daemon.c */
int daemon_start(struct daemon *d, struct psktun_config *cfg, struct psktun_keys *keys);
void daemon_tell(struct daemon *d, unsigned cmd);
void daemon_stop(struct daemon *d, int exit_code);
void daemon_signals_close(struct daemon *d);	/* after the loop has ended */
void daemon_reload(struct daemon *d);	/* leader: asynchronous with workers; control_reloaded() tells */
uint64_t daemon_now_ms(const struct daemon *d);
void daemon_rand(void *buf, size_t len);

/* dtls.c */
int dtls_global_init(struct daemon *d, const struct psktun_config *cfg);
void dtls_global_deinit(struct daemon *d);
int dtls_set_priority(struct daemon *d, const struct psktun_conf_dtls *c);
int dtls_priority_new(const struct psktun_conf_dtls *c, gnutls_priority_t *out, struct psktun_diag *diag);
/* 64 bytes into out->data when it is set (out->size 64), else into a gnutls_malloc'd buffer. */
int dtls_ticket_key_load(const char *path, gnutls_datum_t *out, struct psktun_diag *diag);
int dtls_session_client(struct session *s, const struct psktun_key *key);
int dtls_session_server(struct session *s, gnutls_dtls_prestate_st *prestate);
void dtls_session_deinit(struct session *s);
void dtls_flight_begin(struct session *s);
void dtls_flight_end(struct session *s);
void dtls_key_digest(const struct psktun_key *key, uint8_t out[32]);
void dtls_save_resumption(struct session *s);
size_t dtls_plain_max(const struct session *s);
void dtls_server_cache_stats(uint64_t *n, uint64_t *bytes);
void dtls_server_cache_deinit(void);
void dtls_server_cache_foreach(struct daemon *d, void (*fn)(void *arg, const struct resume_view *v), void *arg);
int dtls_server_cache_put(struct daemon *d, const struct resume_view *v);
bool dtls_server_cache_with(struct daemon *d, const uint8_t *id, size_t len,
			    void (*fn)(void *arg, const struct resume_view *v), void *arg);
bool dtls_server_cache_has(struct daemon *d, const uint8_t *id, size_t len);
void dtls_fake_key(struct daemon *d, const char *identity, size_t len, uint8_t *out, size_t out_len);

/* session.c */
struct session *session_new(struct tunnel *t, const char *identity, size_t len);
void session_close(struct session *s, enum close_reason why);
void session_handshake_start(struct session *s);
void session_handshake_begin(struct session *s);
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
uint64_t identity_hash(const char *identity, size_t len);

/* tunnel.c */
/* Opens everything that can fail (problems go to diag) but reads nothing
 * until tunnel_start. During a reload it shares the sockets of a `retiring`
 * tunnel on the same address. */
int tunnel_open(struct daemon *d, const struct psktun_config *cfg, const struct psktun_conf_tunnel *conf,
		struct psktun_diag *diag, struct tunnel **out);
void tunnel_start(struct tunnel *t);
void tunnel_close(struct tunnel *t);
bool tunnel_conf_equal(const struct psktun_conf_tunnel *a, const struct psktun_conf_tunnel *b);
int tunnel_resolve(struct tunnel *t);
void tunnel_alloc_rx(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
int session_socket_open(struct session *s, session_sock_cb on_recv, const char *what);
int session_send_plain(struct session *s, const uint8_t *buf, size_t len);
void session_deliver(struct session *s, uint8_t *buf, size_t len);
int tunnel_send_plain(struct tunnel *t, const struct sockaddr *to, const uint8_t *buf, size_t len);
void tunnel_count_reason(struct tunnel *t, enum psktun_reason r);
void handle_closed_free_session(uv_handle_t *h);
void session_sock_closed(void *session);	/* a done callback for session_sock_close */

/* gateway.c */
int gateway_start(struct tunnel *t, const struct psktun_config *cfg);
void gateway_stop(struct tunnel *t);
int gateway_bindings_load(struct tunnel *t, const struct psktun_config *cfg);
int gateway_session_connect(struct session *s);

/* terminator.c */
int terminator_start(struct tunnel *t, const struct psktun_config *cfg);
int terminator_use_shared_plain(struct tunnel *t, const struct sockaddr *local);
void terminator_shared_plain_start(struct tunnel *t);
void terminator_established(struct session *s);
void terminator_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len);

/* plugin.c */
int plugin_load(const char *dir, const char *name, const struct plugin **out);
const struct plugin *plugin_find(const char *name);	/* loaded already, or NULL */
/* Every tunnel's plugin loaded (load) or found, and its options checked;
 * problems go to diag as FILE:LINE. */
int plugin_check_config(const struct psktun_config *cfg, bool load, struct psktun_diag *diag);
void plugin_unload_all(void);
int plugin_tunnel_init(struct tunnel *t, const struct psktun_config *cfg, struct psktun_diag *diag);
void plugin_tunnel_timer_start(struct tunnel *t);
void plugin_tunnel_fini(struct tunnel *t);
int plugin_identify(struct tunnel *t, const struct sockaddr *from, const uint8_t *buf,
		    size_t len, char *id, size_t *id_len);
enum psktun_verdict plugin_on_plain(struct tunnel *t, struct session *s, const struct sockaddr *from,
				    uint8_t *buf, size_t *len, size_t cap, enum psktun_reason *reason,
				    struct session **target);
/* Gateway: the protocol's refusal of a datagram whose claimed identity its
 * source may not speak for; true with buf[0..*len) to send back, or false. */
bool plugin_refusal(struct tunnel *t, const struct sockaddr *from, uint8_t *buf, size_t *len,
		    size_t cap);
enum psktun_verdict plugin_on_tunnel(struct session *s, uint8_t *buf, size_t *len, size_t cap,
				     enum psktun_reason *reason);
void plugin_session_open(struct session *s);
void plugin_session_close(struct session *s);
/* Around every call into a plugin: what it asks of a session (report_silent,
 * rehandshake) runs when the outermost call on this thread ends. */
void plugin_call_begin(void);
void plugin_call_end(void);
extern const struct psktun_host plugin_host;

/* control.c */
int control_start(struct daemon *d, const char *path);
void control_stop(struct daemon *d);
void control_sessions_text(struct daemon *d, char **out, size_t *len);
void control_gathered(struct daemon *d);
/* The leader's reload number `seq` has ended: r == 0 applied, else `why`. */
void control_reloaded(struct daemon *d, unsigned seq, int r, const char *why);

/* cache.c: the shared session cache in Redis (terminator, session_cache.redis). */
int shared_cache_start(struct daemon *d);
void shared_cache_stop(struct daemon *d);
void shared_cache_store(struct daemon *d, const gnutls_datum_t *sid, const gnutls_datum_t *data,
			const char *identity, size_t id_len, const uint8_t digest[32]);
void shared_cache_remove(struct daemon *d, const gnutls_datum_t *sid);
/* `show`'s "cache" record: the state, and the counters summed over the workers (sum). */
struct text;
void shared_cache_show(struct daemon *d, const struct psktun_stats *sum, unsigned up, unsigned n,
		       struct text *t);
/* True: the ClientHello, which names a session the local cache lacks, is held
 * while Redis is asked; it comes back through terminator_client_hello. */
bool shared_cache_hold(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len);

/* state.c: `state_file`, resumption state kept across a restart. */
void state_save(struct daemon *d);	/* at SIGTERM/SIGINT, before the sessions close */
void state_load(struct daemon *d);	/* at start, once the tunnels are open */

/* notify.c: systemd's sd_notify protocol, written directly. */
void notify_systemd(const char *state);
#endif

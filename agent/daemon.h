/* daemon: struct daemon, one event loop's state (the leader's or a worker's), and daemon.c's functions. */
#ifndef PSKTUN_DAEMON_H
#define PSKTUN_DAEMON_H
#include <stdbool.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <uv.h>
#include "config.h"
#include "failure.h"
#include "hsslots.h"
#include "keys.h"
#include "queue.h"
#include "sessionsock.h"
#include "stats.h"

#define PSKTUN_DGRAM_MAX 65536	/* the largest UDP payload we read; libuv's recvmmsg chunk */
#define PSKTUN_RX_BATCH 8	/* datagrams one recvmmsg takes from a tunnel's shared socket */
#define PSKTUN_RCVBUF (4 << 20)	/* receive buffer of a tunnel's shared socket: a burst of meters */

struct tunnel;
struct session;
struct shared_cache;
struct show_rows;
struct dtls_secrets;
struct uring_tx;
struct psktun_seal_keys;
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

/* The loop's clock and nonces: read by every layer, so not a call up into daemon.c. */
static inline uint64_t daemon_now_ms(const struct daemon *d)
{
	return uv_now(d->loop);
}

static inline void daemon_rand(void *buf, size_t len)
{
	gnutls_rnd(GNUTLS_RND_NONCE, buf, len);
}

#endif

/* tunnel: one `tunnels` entry (struct tunnel): its sockets, `connect`, plugin, sessions, role. */
#ifndef PSKTUN_TUNNEL_H
#define PSKTUN_TUNNEL_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>
#include "config.h"
#include "diag.h"
#include "htab.h"
#include "resume.h"
#include "psktun/plugin.h"

struct daemon;
struct session;
struct plugin;
struct binding;
struct rxsock;
struct sendbatch;
struct ratelimit;
struct meter_table;
struct role_ops;

struct tunnel {
	struct daemon *d;
	struct tunnel *next;
	struct psktun_conf_tunnel conf;	/* deep copy, owned */
	enum psktun_mode mode;
	const struct role_ops *ops;	/* what its role does where the roles differ (role.h) */

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
	bool said_no_heartbeat;		/* gateway: logged once that the cloud refused the probe (session.c) */
};

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
/* Plaintext out of the tunnel's plain side (egress.h): to `to`, or to the session's
 * peer there; counted in plain_out or dropped_send. -ENOTSUP: no socket there. */
int tunnel_send_plain(struct tunnel *t, struct session *s, const struct sockaddr *to, const uint8_t *buf,
		      size_t len);
/* ... for session s, counted in its own counters too. */
int session_send_plain(struct session *s, const uint8_t *buf, size_t len);

/* Which way a datagram goes: from the plain side into a session, or out of one. */
enum tunnel_dir { TUNNEL_UPLINK, TUNNEL_DOWNLINK };
void tunnel_apply_verdict(struct tunnel *t, struct session *s, enum tunnel_dir dir, enum psktun_verdict v,
			  enum psktun_reason reason, const struct sockaddr *from, uint8_t *buf, size_t len);
void tunnel_deliver(struct session *s, uint8_t *buf, size_t len);
void tunnel_count_reason(struct tunnel *t, enum psktun_reason r);

#endif

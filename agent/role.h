/* role: what a tunnel's role (gateway.c, terminator.c) does where the roles differ: an interface header. */
#ifndef PSKTUN_ROLE_H
#define PSKTUN_ROLE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "egress.h"
#include "failure.h"

struct psktun_config;
struct session;
struct tunnel;

/*
 * One const table per role, filled in by the role's file; a tunnel points at
 * its role's (tunnel->ops). The layers below the roles (tunnel.c, session.c,
 * plugin.c) call through it instead of asking which role they serve, so no
 * call goes up into gateway.c or terminator.c. An operation a role does not
 * have is NULL.
 */
struct role_ops {
	const char *name;	/* "gateway", "terminator": log lines, `show` */
	const char *up_where;	/* a session-up log line's direction: "to cloud", "from peer" */
	bool dtls_client;	/* begins the handshakes; failures are worded from its side (meters.c) */
	enum egress_side dtls_side;	/* where the DTLS peer is; the plain side is the other (egress.h) */
	bool keeps_uplink;	/* replay what was sent since the last downlink, watch the path (session.c) */
	bool rehandshakes;	/* a silent or dead path starts a new handshake on a fresh socket */

	/* The tunnel is set up (after its plugin): bind what the role needs, name its receive callback. */
	int (*start)(struct tunnel *t, const struct psktun_config *cfg);
	/* The tunnel closes: free what start made. */
	void (*stop)(struct tunnel *t);
	/* A session's turn to shake hands (the daemon's max_handshakes queue, session.c). */
	void (*handshake_start)(struct session *s);
	/* The handshake completed; the session may be closed on return (then state != ESTABLISHED). */
	void (*established)(struct session *s);
	/* The handshake failed (counted, slot released): back off or close. */
	void (*handshake_failed)(struct session *s, enum psktun_failure why, const char *detail);
	/* The session ends (before its handles close): the plugin's session_close. */
	void (*session_closing)(struct session *s);
	/* Plaintext a record carried, for the plain side (tunnel_deliver: the plugin's verdict first). */
	void (*deliver)(struct session *s, uint8_t *buf, size_t len);
	/* The plugin asks for a shared backend socket (psktun_host.use_shared_plain). */
	int (*use_shared_plain)(struct tunnel *t, const struct sockaddr *local);
	/* The tunnel goes live: start reading what start opened besides the accept socket. */
	void (*live)(struct tunnel *t);
};

extern const struct role_ops gateway_ops;
extern const struct role_ops terminator_ops;
#endif

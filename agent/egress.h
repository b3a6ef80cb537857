/* egress: the one place that picks the socket a datagram leaves by. */
#ifndef PSKTUN_EGRESS_H
#define PSKTUN_EGRESS_H
#include <stddef.h>
#include <sys/socket.h>

struct session;
struct tunnel;

/*
 * A tunnel has two sides. ACCEPT: its accept socket (gateway: the meters'
 * plaintext; terminator: the DTLS peers), batched per loop iteration
 * (sendbatch.c). CONNECT: toward its `connect` (gateway: the DTLS server;
 * terminator: the backend), through the session's own connected socket, or
 * the tunnel's shared plain socket when its plugin asked for one.
 */
enum egress_side { EGRESS_ACCEPT, EGRESS_CONNECT };

/* One datagram out on `side`: to `to`, or when `to` is NULL to the session's
 * peer there (ACCEPT: s->peer; CONNECT: `connect`). 0 or more when it left
 * (or was batched), a negative errno when not; counts nothing. */
int egress_send(struct tunnel *t, struct session *s, enum egress_side side, const struct sockaddr *to,
		const void *buf, size_t len);
#endif

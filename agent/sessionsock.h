/* sessionsock: a session's own connected UDP socket, read with one recvmmsg per readiness. */
#ifndef PSKTUN_SESSIONSOCK_H
#define PSKTUN_SESSIONSOCK_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

struct session;

/* nread < 0: a negative errno (e.g. -ECONNREFUSED after ICMP port unreachable). */
typedef void (*session_sock_cb)(struct session *s, ssize_t nread, uint8_t *data, bool truncated);

/*
 * Why not uv_udp_t: libuv reads a socket until EAGAIN, a second syscall for
 * the one datagram a session's socket usually holds. Here one recvmmsg takes
 * what is there; epoll (level-triggered) calls again if more arrives.
 */
struct session_sock {
	uv_poll_t poll;		/* first: the close callback frees the whole struct */
	int fd;
	bool closed;		/* no more deliveries, even from a batch already read */
	struct session *s;
	session_sock_cb on_recv;
};

/* A socket connected to `to`, delivering into the daemon's receive buffer. */
int session_sock_open(struct session *s, const struct sockaddr *to, session_sock_cb on_recv,
		      struct session_sock **out);
/* One datagram: 0 or a negative errno. */
int session_sock_send(struct session_sock *ss, const void *data, size_t len);
/* Stops deliveries, closes the fd; close_cb gets (uv_handle_t *)ss to free it. */
void session_sock_close(struct session_sock *ss, uv_close_cb close_cb);
#endif

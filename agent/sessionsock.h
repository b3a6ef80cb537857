/* sessionsock: a session's own connected UDP socket, read with one recvmmsg per readiness. */
#ifndef PSKTUN_SESSIONSOCK_H
#define PSKTUN_SESSIONSOCK_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>
#include "uringrx.h"

struct session;
struct daemon;

/* nread < 0: a negative errno (e.g. -ECONNREFUSED after ICMP port unreachable). */
typedef void (*session_sock_cb)(struct session *s, ssize_t nread, uint8_t *data, bool truncated);

/*
 * With io_uring (uringrx.h) a socket is read through the ring instead: armed
 * once when it opens, no epoll at all. Otherwise:
 *
 * Why not a uv_udp_t or uv_poll_t per socket: libuv reads a socket until
 * EAGAIN (a second syscall for the one datagram a session's socket usually
 * holds), and setting up a poll handle costs an ioctl and three epoll_ctl
 * calls. A meter's handshake opens two such sockets, one in each daemon.
 * Here the loop watches one epoll set; a socket joins it with one
 * epoll_ctl, leaves it by close(), and one recvmmsg takes what is there
 * (level-triggered: epoll reports it again if more arrives).
 */
struct session_sock {
	int fd;
	bool closed;		/* no more deliveries, even from a batch already read */
	bool held;		/* closed while the ring held it: the ring's on_ended frees it */
	struct uring_rx_sock rx;	/* with a ring: its receives */
	struct session *s;
	session_sock_cb on_recv;
	struct session_sock *next_dead;	/* closed; freed after this loop iteration */
	void (*done)(void *arg);
	void *done_arg;
};

/* A daemon's (loop's) set of session sockets. */
struct sockset {
	int epfd;		/* valid while open */
	uv_poll_t poll;		/* readable when a socket in the set is */
	uv_check_t reap;	/* frees closed sockets once no event can name them */
	struct session_sock *dead;
	bool open;		/* opened with the first socket (zeroed: not yet) */
	bool closing;		/* the daemon stops */
	bool closed;		/* the last reap ran: closes free at once */
	struct uring_rx *ring;	/* receives through io_uring; NULL: epoll and recvmmsg */
};

/* A socket connected to `to`, delivering into the daemon's receive buffer. */
int session_sock_open(struct session *s, const struct sockaddr *to, session_sock_cb on_recv,
		      struct session_sock **out);
/* One datagram: 0 or a negative errno. */
int session_sock_send(struct session_sock *ss, const void *data, size_t len);
/* Stops deliveries and closes the fd now; done(arg) runs once ss is freed,
 * after the current loop iteration. */
void session_sock_close(struct session_sock *ss, void (*done)(void *arg), void *arg);
/* The daemon stops: closes the set (every session is closed by now). */
void sockset_close(struct sockset *set);
#endif

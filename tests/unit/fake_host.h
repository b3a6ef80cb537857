/* fake_host: a psktun_host table that records every call, to drive a plugin without the daemon. */
#ifndef PSKTUN_TEST_FAKE_HOST_H
#define PSKTUN_TEST_FAKE_HOST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "psktun/plugin.h"

/* The plugin under test, compiled into the test program. */
extern const struct psktun_plugin psktun_plugin;

/* The daemon's opaque handles, as the fake completes them. */
struct psktun_tunnel {
	enum psktun_role role;
};
struct psktun_session {
	const char *identity;
};

/* One kind of datagram the plugin sent through the host: how many, the last. */
struct fake_sent {
	int n;
	uint8_t buf[512];
	size_t len;
};

/* Everything the plugin asked of the host; reset by fake_host_reset(). */
struct fake {
	struct psktun_tunnel tunnel;
	struct psktun_session a, b;	/* "meter-0001", "meter-0002": what find_session knows */
	uint64_t now;			/* what now_ms() answers */
	bool no_sends;			/* any send_* call fails the test */
	struct fake_sent plain, plain_to, tunnel_sent;
	struct sockaddr_storage plain_to_addr;
	struct psktun_session *plain_session;
	int n_idle;
	uint32_t idle_s;
	int n_silent, n_rehandshake;
	int n_session_timer;
	uint32_t session_timer_ms;
	int n_tunnel_timer;
	uint32_t tunnel_timer_ms;
	int n_shared;
	char shared[64];
	int shared_rc;			/* what use_shared_plain() returns */
	int n_log;
	enum psktun_log_level log_level;
	char log[256];			/* the last line */
};

extern struct fake F;
extern const struct psktun_host fake_host;

/* Zeroes F, then: role, a and b named, now = 1000. */
void fake_host_reset(enum psktun_role role);
#endif

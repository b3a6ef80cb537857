/* test_session: the session state machine, run for real: a gateway and a terminator in one loop on 127.0.0.1. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>
#include "backoff.h"
#include "daemon.h"
#include "dtls.h"
#include "gateway.h"
#include "log.h"
#include "pluginhost.h"
#include "record.h"
#include "session.h"
#include "sessionsock.h"
#include "tunnel.h"

#define KEY1 "00112233445566778899aabbccddeeff"
#define KEY2 "ffeeddccbbaa99887766554433221100"

struct world {
	uv_loop_t loop;
	struct daemon *gw, *term;
	uv_udp_t meter, backend;
	unsigned short meter_port, gw_port, term_port, backend_port;
	char dir[64];
	char got[16][64];	/* what the meter received, in order (the first 16) */
	unsigned n_got;		/* how many it received */
	bool timed_out;
};

static bool port_free(unsigned short port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				 .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0), r;

	assert_true(fd >= 0);
	r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return r == 0;
}

/*
 * A free UDP port on 127.0.0.1 outside the kernel's ephemeral range (as the
 * integration harness's stable_udp_port): between choosing a port and the
 * daemon's bind, any socket bound to port 0 on the machine (another test's,
 * a gateway's per-session socket) can take an ephemeral one; only an
 * explicit bind can take one of these, chosen at random among thousands.
 */
static unsigned short free_port(void)
{
	static unsigned short given[64];
	static unsigned n_given;
	unsigned lo = 32768, hi = 60999;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

	if (f) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768, hi = 60999;
		fclose(f);
	}
	for (int tries = 0; tries < 1000; tries++) {
		unsigned short p;
		bool again = false;

		gnutls_rnd(GNUTLS_RND_NONCE, &p, sizeof(p));
		p = (unsigned short)(10000 + p % (65536 - 10000));
		if (p >= lo && p <= hi)
			continue;
		for (unsigned i = 0; i < n_given && i < 64; i++)
			again |= given[i] == p;
		if (again || !port_free(p))
			continue;
		given[n_given++ % 64] = p;
		return p;
	}
	fail_msg("no free UDP port outside the ephemeral range %u-%u", lo, hi);
	return 0;
}

static void write_file(const char *dir, const char *name, const char *fmt, ...)
{
	char path[256];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	chmod(path, 0600);
}

static struct daemon *start(struct world *w, const char *name)
{
	struct psktun_config *cfg = NULL;
	struct psktun_keys *keys = NULL;
	struct psktun_diag diag;
	struct daemon *d = calloc(1, sizeof(*d));
	char path[256];

	assert_non_null(d);
	snprintf(path, sizeof(path), "%s/%s", w->dir, name);
	psktun_diag_init(&diag);
	if (psktun_config_load(path, &cfg, &diag) < 0 || psktun_keys_load(cfg->keys, true, &keys, &diag) < 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.line[i]);
		fail();
	}
	psktun_diag_deinit(&diag);
	d->loop = &w->loop;
	w->loop.data = d;
	assert_int_equal(daemon_start(d, cfg, keys), 0);
	return d;
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char b[2048];

	buf->base = b;
	buf->len = sizeof(b);
}

static void on_meter(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned fl)
{
	struct world *w = h->data;

	if (n <= 0)
		return;
	if (w->n_got < 16)
		snprintf(w->got[w->n_got], 64, "%.*s", (int)n, buf->base);
	w->n_got++;
}

static void on_backend(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned fl)
{
	uv_buf_t b = uv_buf_init(buf->base, n);

	if (n > 0)
		uv_udp_try_send(h, &b, 1, from);
}

static void bind_udp(struct world *w, uv_udp_t *u, unsigned short port, uv_udp_recv_cb cb)
{
	struct sockaddr_in a;

	uv_ip4_addr("127.0.0.1", port, &a);
	uv_udp_init(&w->loop, u);
	u->data = w;
	assert_int_equal(uv_udp_bind(u, (struct sockaddr *)&a, 0), 0);
	uv_udp_recv_start(u, alloc_buf, cb);
}

static const char *term_dtls = "";	/* extra dtls settings for the terminator */

/* A gateway (meter-0001 at the meter port) -> terminator -> echo backend, with extra dtls settings. */
static void world_setup(struct world *w, const char *gw_dtls, bool with_terminator)
{
	memset(w, 0, sizeof(*w));
	uv_loop_init(&w->loop);
	snprintf(w->dir, sizeof(w->dir), "/tmp/psktun-test-XXXXXX");
	assert_non_null(mkdtemp(w->dir));
	w->meter_port = free_port();
	w->gw_port = free_port();
	w->term_port = free_port();
	w->backend_port = free_port();
	write_file(w->dir, "keys.psk", "meter-0001:" KEY1 "\nmeter-0002:" KEY2 "\n");
	write_file(w->dir, "gw.conf",
		   "mode = \"gateway\"; keys = \"keys.psk\";\n"
		   "tunnels = ({ name = \"t\"; accept = \"127.0.0.1:%u\"; connect = \"127.0.0.1:%u\"; });\n"
		   "meters = ({ identity = \"meter-0001\"; source = \"127.0.0.1:%u\"; });\n"
		   "dtls = { retransmit_ms = 200; %s };\n",
		   w->gw_port, w->term_port, w->meter_port, gw_dtls);
	write_file(w->dir, "term.conf",
		   "mode = \"terminator\"; keys = \"keys.psk\";\n"
		   "tunnels = ({ name = \"t\"; accept = \"127.0.0.1:%u\"; connect = \"127.0.0.1:%u\"; });\n"
		   "dtls = { retransmit_ms = 200; %s };\n", w->term_port, w->backend_port, term_dtls);
	write_file(w->dir, "ticket.key", "%s\n", KEY1 KEY2 KEY1 KEY2);	/* 64 bytes */
	bind_udp(w, &w->backend, w->backend_port, on_backend);
	bind_udp(w, &w->meter, w->meter_port, on_meter);
	if (with_terminator)
		w->term = start(w, "term.conf");
	w->gw = start(w, "gw.conf");
}

static void world_teardown(struct world *w)
{
	char cmd[128];

	if (w->gw)
		daemon_stop(w->gw, 0);
	if (w->term)
		daemon_stop(w->term, 0);
	uv_close((uv_handle_t *)&w->meter, NULL);
	uv_close((uv_handle_t *)&w->backend, NULL);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (w->gw)
		daemon_signals_close(w->gw);
	if (w->term)
		daemon_signals_close(w->term);
	assert_int_equal(uv_loop_close(&w->loop), 0);
	for (struct daemon *d = w->gw; d; d = d == w->gw ? w->term : NULL) {
		dtls_global_deinit(d);
		psktun_config_free(d->cfg);
		psktun_keys_free(d->keys);
		free(d);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
	assert_int_equal(system(cmd), 0);
}

static void meter_send(struct world *w, const char *text)
{
	struct sockaddr_in a;
	uv_buf_t b = uv_buf_init((char *)text, strlen(text));

	uv_ip4_addr("127.0.0.1", w->gw_port, &a);
	assert_int_equal(uv_udp_try_send(&w->meter, &b, 1, (struct sockaddr *)&a), (int)strlen(text));
}

static void on_deadline(uv_timer_t *t)
{
	struct world *w = t->data;

	w->timed_out = true;
}

static void on_tick(uv_timer_t *t)
{
}

/* Run the loop until cond(w) holds or timeout_ms pass; returns whether it holds. */
static bool run_until(struct world *w, bool (*cond)(struct world *), unsigned timeout_ms)
{
	uv_timer_t deadline, tick;

	w->timed_out = false;
	uv_timer_init(&w->loop, &deadline);
	uv_timer_init(&w->loop, &tick);
	deadline.data = w;
	uv_timer_start(&deadline, on_deadline, timeout_ms, 0);
	uv_timer_start(&tick, on_tick, 20, 20);	/* wakes the loop for conditions set by threads */
	while (!cond(w) && !w->timed_out)
		uv_run(&w->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&w->loop, UV_RUN_NOWAIT);
	return cond(w);
}

static unsigned want_got;
static bool got_enough(struct world *w) { return w->n_got >= want_got; }

static void test_queued_datagrams_leave_in_order_once_the_handshake_completes(void **state)
{
	struct world w;

	world_setup(&w, "", true);
	meter_send(&w, "one");
	meter_send(&w, "two");
	meter_send(&w, "three");
	want_got = 3;
	assert_true(run_until(&w, got_enough, 10000));
	assert_string_equal(w.got[0], "one");
	assert_string_equal(w.got[1], "two");
	assert_string_equal(w.got[2], "three");
	assert_int_equal(w.gw->stats.handshakes_completed, 1);
	assert_int_equal(w.term->stats.handshakes_completed, 1);
	assert_int_equal(w.term->stats.cookies_sent, 1);
	assert_int_equal(w.gw->stats.plain_in, 3);
	assert_int_equal(w.gw->stats.plain_out, 3);
	assert_int_equal(w.term->stats.plain_out, 3);
	assert_int_equal(w.gw->stats.dropped_overflow, 0);
	assert_int_equal(w.gw->n_sessions, 1);
	assert_int_equal(w.term->n_sessions, 1);
	world_teardown(&w);
}

static void test_a_full_handshake_queue_counts_overflow(void **state)
{
	struct world w;

	world_setup(&w, "queue_len = 2;", true);
	for (int i = 0; i < 5; i++) {
		char text[8];

		snprintf(text, sizeof(text), "d%d", i);
		meter_send(&w, text);
	}
	want_got = 2;
	assert_true(run_until(&w, got_enough, 10000));
	assert_string_equal(w.got[0], "d0");
	assert_string_equal(w.got[1], "d1");
	assert_int_equal(w.gw->stats.dropped_overflow, 3);
	assert_int_equal(w.gw->stats.plain_in, 5);
	world_teardown(&w);
}

static bool gw_handshaking(struct world *w) { return w->gw->stats.handshakes_started >= 1; }

static void test_a_lost_client_hello_is_retransmitted(void **state)
{
	struct world w;

	world_setup(&w, "", false);	/* the first ClientHello finds nobody */
	meter_send(&w, "late");
	assert_true(run_until(&w, gw_handshaking, 1000));
	w.term = start(&w, "term.conf");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 3000));	/* retransmit_ms = 200, doubling */
	assert_string_equal(w.got[0], "late");
	assert_int_equal(w.gw->stats.handshakes_started, 1);
	assert_int_equal(w.gw->stats.handshakes_failed, 0);
	world_teardown(&w);
}

static bool gw_failed_once(struct world *w) { return w->gw->stats.handshakes_failed >= 1; }
static bool gw_failed_twice(struct world *w) { return w->gw->stats.handshakes_failed >= 2; }

static void test_a_failed_handshake_backs_off_exponentially_and_retries(void **state)
{
	struct world w;
	struct session *s;
	uint64_t due;

	world_setup(&w, "handshake_timeout_s = 1;", false);	/* nobody answers */
	meter_send(&w, "hello?");
	assert_true(run_until(&w, gw_failed_once, 5000));
	s = w.gw->tunnels->sessions;
	assert_non_null(s);
	assert_int_equal(s->state, SESSION_BACKOFF);
	assert_int_equal(s->failures, 1);
	assert_int_equal(s->queue.n, 1);	/* the datagram still waits */
	due = uv_timer_get_due_in(&s->timer);
	assert_true(due >= PSKTUN_BACKOFF_BASE_MS / 2 - 10 && due <= PSKTUN_BACKOFF_BASE_MS);
	assert_true(run_until(&w, gw_failed_twice, 8000));
	s = w.gw->tunnels->sessions;
	assert_int_equal(s->state, SESSION_BACKOFF);
	assert_int_equal(s->failures, 2);
	due = uv_timer_get_due_in(&s->timer);
	assert_true(due >= PSKTUN_BACKOFF_BASE_MS - 10 && due <= 2 * PSKTUN_BACKOFF_BASE_MS);
	assert_int_equal(w.gw->stats.handshakes_started, 2);
	world_teardown(&w);
}

static void test_backoff_doubles_with_jitter_up_to_the_cap(void **state)
{
	assert_int_equal(psktun_backoff_ms(1, 0), 1000);
	assert_int_equal(psktun_backoff_ms(1, 1000), 2000);
	assert_int_equal(psktun_backoff_ms(1, 1001), 1000);
	assert_int_equal(psktun_backoff_ms(2, 0), 2000);
	assert_int_equal(psktun_backoff_ms(3, 2000), 6000);
	assert_int_equal(psktun_backoff_ms(3, 4000), 8000);
	assert_int_equal(psktun_backoff_ms(30, 0), PSKTUN_BACKOFF_MAX_MS / 2);
	assert_int_equal(psktun_backoff_ms(30, PSKTUN_BACKOFF_MAX_MS / 2), PSKTUN_BACKOFF_MAX_MS);
}

static bool both_closed(struct world *w) { return w->gw->n_sessions == 0 && w->term->n_sessions == 0; }

static void test_an_idle_session_closes_with_close_notify(void **state)
{
	struct world w;

	world_setup(&w, "idle_timeout_s = 1;", true);
	meter_send(&w, "ping");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	assert_int_equal(w.gw->n_sessions, 1);
	assert_true(run_until(&w, both_closed, 5000));
	assert_int_equal(w.gw->stats.sessions_closed, 1);
	/* The terminator's idle timeout is 600 s: it closed because close_notify arrived. */
	assert_int_equal(w.term->stats.sessions_closed, 1);
	/* The next datagram opens a new session. */
	meter_send(&w, "again");
	want_got = 2;
	assert_true(run_until(&w, got_enough, 10000));
	assert_string_equal(w.got[1], "again");
	assert_int_equal(w.gw->stats.handshakes_completed, 2);
	/* ...resuming the first one: a round trip and about 100 bytes fewer on the air. */
	assert_int_equal(w.gw->stats.handshakes_resumed, 1);
	assert_int_equal(w.term->stats.handshakes_resumed, 1);
	/* ...without a cookie exchange (RFC 6347 4.2.1): only the first one had it. */
	assert_int_equal(w.term->stats.cookies_sent, 1);
	world_teardown(&w);
}

static void test_tickets_resume_with_a_key_from_a_file(void **state)
{
	struct world w;

	term_dtls = "tickets = true; ticket_key_file = \"ticket.key\";";
	world_setup(&w, "tickets = true; idle_timeout_s = 1;", true);
	term_dtls = "";
	meter_send(&w, "first");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	assert_true(run_until(&w, both_closed, 5000));
	meter_send(&w, "second");
	want_got = 2;
	assert_true(run_until(&w, got_enough, 10000));
	assert_int_equal(w.gw->stats.handshakes_completed, 2);
	assert_int_equal(w.gw->stats.handshakes_resumed, 1);
	assert_int_equal(w.term->stats.handshakes_resumed, 1);
	assert_int_equal(w.term->ticket_key.size, 64);
	assert_int_equal(w.term->ticket_key.data[0], 0x00);
	assert_int_equal(w.term->ticket_key.data[1], 0x11);
	world_teardown(&w);
}

static bool gw_rehandshook(struct world *w) { return w->gw->stats.rehandshakes >= 1 && w->gw->n_sessions == 1 &&
	w->gw->tunnels->sessions->state == SESSION_ESTABLISHED; }

static void test_after_a_nat_rebinding_the_next_retry_is_answered(void **state)
{
	struct world w;
	struct session *s;
	struct session_sock *old;

	world_setup(&w, "", true);
	meter_send(&w, "before");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	/* The NAT forgets us: our session's packets now leave from a new port. */
	s = w.gw->tunnels->sessions;
	old = s->sock;
	s->sock = NULL;
	s->open_handles++;
	session_sock_close(old, session_sock_closed, s);
	assert_int_equal(gateway_session_connect(s), 0);
	meter_send(&w, "lost");		/* the terminator knows no session at the new address */
	assert_true(run_until(&w, gw_rehandshook, 5000));
	assert_int_equal(w.term->stats.lost_session_alerts, 1);
	/* What went on the dead path goes again on the new session. */
	want_got = 2;
	assert_true(run_until(&w, got_enough, 5000));
	assert_string_equal(w.got[1], "lost");
	assert_int_equal(w.gw->stats.replayed, 1);
	meter_send(&w, "retry");	/* the meter asks again, as meters do */
	want_got = 3;
	assert_true(run_until(&w, got_enough, 5000));
	assert_string_equal(w.got[2], "retry");
	assert_int_equal(w.gw->stats.handshakes_completed, 2);
	assert_int_equal(w.gw->stats.handshakes_resumed, 1);
	assert_int_equal(w.term->stats.sessions_replaced, 1);
	assert_int_equal(w.term->n_sessions, 1);
	world_teardown(&w);
}

/* A DTLS client in a thread, blocking, against the terminator in the test's loop. */
struct client {
	unsigned short port;
	int fd;
	bool reuse_fd;
	bool done, ok;
	char echo[64];
};

static int client_session(struct client *c, const char *identity, const char *hexkey)
{
	gnutls_psk_client_credentials_t cred;
	gnutls_datum_t key = { (unsigned char *)hexkey, strlen(hexkey) };
	gnutls_session_t s;
	char buf[64];
	int r;

	gnutls_psk_allocate_client_credentials(&cred);
	gnutls_psk_set_client_credentials(cred, identity, &key, GNUTLS_PSK_KEY_HEX);
	gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_DATAGRAM);
	gnutls_priority_set_direct(s, PSKTUN_DEFAULT_PRIORITY, NULL);
	gnutls_credentials_set(s, GNUTLS_CRD_PSK, cred);
	gnutls_transport_set_int(s, c->fd);
	gnutls_dtls_set_timeouts(s, 200, 5000);
	gnutls_handshake_set_timeout(s, 5000);
	gnutls_record_set_timeout(s, 5000);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r == 0)
		r = gnutls_record_send(s, identity, strlen(identity));
	if (r > 0)
		r = gnutls_record_recv(s, buf, sizeof(buf) - 1);
	if (r > 0) {
		buf[r] = '\0';
		snprintf(c->echo, sizeof(c->echo), "%s", buf);
	}
	/* No bye: the session is abandoned, as a rebooted meter abandons it. */
	gnutls_deinit(s);
	gnutls_psk_free_client_credentials(cred);
	return r > 0 ? 0 : -1;
}

static int client_socket(unsigned short port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *client_two_handshakes(void *arg)
{
	struct client *c = arg;
	int fd2;

	c->fd = client_socket(c->port);
	c->ok = client_session(c, "meter-0001", KEY1) == 0;
	if (c->reuse_fd) {
		c->ok = c->ok && client_session(c, "meter-0001", KEY1) == 0;
	} else {
		fd2 = client_socket(c->port);	/* a NAT gave the meter a new port */
		close(c->fd);
		c->fd = fd2;
		c->ok = c->ok && client_session(c, "meter-0001", KEY1) == 0;
	}
	close(c->fd);
	__atomic_store_n(&c->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

/* One session, then forged records from the same address every 100 ms for 2.5 s. */
static void *client_then_junk(void *arg)
{
	struct client *c = arg;
	/* an epoch-1 application data record header and garbage: decrypts to nothing */
	static const uint8_t junk[40] = { 23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 27, 1, 2, 3 };
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	c->fd = client_socket(c->port);
	c->ok = client_session(c, "meter-0001", KEY1) == 0;
	for (int i = 0; i < 25; i++) {
		if (send(c->fd, junk, sizeof(junk), 0) < 0)
			break;
		nanosleep(&ts, NULL);	/* the attacker's pace, not a wait for a condition */
	}
	close(c->fd);
	__atomic_store_n(&c->done, true, __ATOMIC_SEQ_CST);
	return NULL;
}

static struct client *the_client;
static bool client_done(struct world *w) { return __atomic_load_n(&the_client->done, __ATOMIC_SEQ_CST); }

static void run_client_twice(bool reuse_fd)
{
	struct world w;
	struct client c = { .reuse_fd = reuse_fd };
	pthread_t th;

	world_setup(&w, "", true);
	c.port = w.term_port;
	the_client = &c;
	assert_int_equal(pthread_create(&th, NULL, client_two_handshakes, &c), 0);
	assert_true(run_until(&w, client_done, 15000));
	pthread_join(th, NULL);
	assert_true(c.ok);
	assert_string_equal(c.echo, "meter-0001");
	assert_int_equal(w.term->stats.handshakes_completed, 2);
	assert_int_equal(w.term->stats.sessions_replaced, 1);
	assert_int_equal(w.term->n_sessions, 1);
	assert_int_equal(w.term->stats.plain_out, 2);
	world_teardown(&w);
}

static bool term_idle_closed(struct world *w) { return w->term->stats.sessions_closed >= 1; }

static void test_forged_records_do_not_keep_a_session_alive(void **state)
{
	struct world w;
	struct client c = { 0 };
	pthread_t th;

	term_dtls = "idle_timeout_s = 1;";
	world_setup(&w, "", true);
	term_dtls = "";
	c.port = w.term_port;
	the_client = &c;
	assert_int_equal(pthread_create(&th, NULL, client_then_junk, &c), 0);
	/* Idle for 1 s by its authenticated records, while junk keeps arriving. */
	assert_true(run_until(&w, term_idle_closed, 2300));
	assert_false(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST));
	assert_true(run_until(&w, client_done, 5000));
	pthread_join(th, NULL);
	assert_true(c.ok);
	assert_int_equal(w.term->n_sessions, 0);
	world_teardown(&w);
}

/* A datagram of many records: the first DTLS_RECORDS_MAX reach GnuTLS, the rest is dropped and counted. */
static void test_a_datagram_of_too_many_records_is_cut_and_counted(void **state)
{
	struct world w;
	struct session *s;
	uint8_t dgram[(DTLS_RECORDS_MAX + 4) * (DTLS_RECORD_HDR + 1)];
	uint64_t in0, malformed0;

	world_setup(&w, "", true);
	meter_send(&w, "hello");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	s = w.term->tunnels->sessions;
	assert_int_equal(s->state, SESSION_ESTABLISHED);
	/* epoch-1 application data records of one byte each: garbage to GnuTLS */
	for (size_t i = 0; i < DTLS_RECORDS_MAX + 4; i++) {
		uint8_t *r = dgram + i * (DTLS_RECORD_HDR + 1);

		memset(r, 0, DTLS_RECORD_HDR + 1);
		r[0] = 23;
		r[1] = 0xfe;
		r[2] = 0xfd;
		r[4] = 1;
		r[10] = (uint8_t)(i + 100);
		r[12] = 1;
	}
	in0 = w.term->stats.records_in;
	malformed0 = w.term->stats.dropped_malformed;
	session_on_record(s, dgram, sizeof(dgram));
	assert_int_equal(w.term->stats.records_in - in0, DTLS_RECORDS_MAX);
	assert_int_equal(w.term->stats.dropped_malformed - malformed0, 1);
	assert_int_equal(s->state, SESSION_ESTABLISHED);
	/* the session still works */
	meter_send(&w, "again");
	want_got = 2;
	assert_true(run_until(&w, got_enough, 5000));
	assert_string_equal(w.got[1], "again");
	world_teardown(&w);
}

/*
 * Forged datagrams from an established session's peer address, in both
 * directions: to the terminator from the gateway's session socket, to the
 * gateway's session socket from the terminator's own socket. None may
 * stall, close or refresh the session: after each, 20 of 20 requests are
 * answered, the session is the same and still established, its activity
 * stamp untouched, and the datagram is counted.
 */
struct forged {
	const char *name;
	uint8_t data[400];
	size_t len;
	unsigned malformed;	/* expected rise of dropped_malformed at the receiver */
	unsigned discarded;	/* ... of records_discarded (well-framed, handed to GnuTLS) */
	unsigned cookies;	/* expected rise of cookies_sent (terminator) */
};

static size_t put_record(uint8_t *p, uint8_t type, uint16_t version, uint16_t epoch, uint32_t seq,
			 uint16_t length_field, size_t body)
{
	p[0] = type;
	p[1] = version >> 8;
	p[2] = version & 0xff;
	p[3] = epoch >> 8;
	p[4] = epoch & 0xff;
	memset(p + 5, 0, 6);
	p[7] = seq >> 24;
	p[8] = (seq >> 16) & 0xff;
	p[9] = (seq >> 8) & 0xff;
	p[10] = seq & 0xff;
	p[11] = length_field >> 8;
	p[12] = length_field & 0xff;
	for (size_t i = 0; i < body; i++)
		p[13 + i] = (uint8_t)(0xa5 ^ i);
	return 13 + body;
}

/* A minimal ClientHello (PSK-AES128-CCM8, no cookie): what a spoofer sends. */
static size_t put_client_hello(uint8_t *p)
{
	static const uint8_t hs[12 + 42] = {
		1, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 42,	/* ClientHello, seq 0, unfragmented */
		0xfe, 0xfd,				/* client_version */
		[46] = 0, 0,				/* random (zeros), session_id, cookie: empty */
		[48] = 0, 2, 0xc0, 0xa8,		/* cipher_suites: TLS_PSK_WITH_AES_128_CCM_8 */
		[52] = 1, 0,				/* compression: null */
	};

	put_record(p, 22, 0xfeff, 0, 0, sizeof(hs), 0);
	memcpy(p + 13, hs, sizeof(hs));
	return 13 + sizeof(hs);
}

static struct forged *shape(struct forged *f, size_t *i, const char *name, unsigned malformed,
			    unsigned discarded)
{
	struct forged *x = &f[(*i)++];

	x->name = name;
	x->malformed = malformed;
	x->discarded = discarded;
	x->cookies = 0;
	x->len = 0;
	return x;
}

static void forged_shapes(struct forged *f, size_t *n, bool to_terminator)
{
	struct forged *x;
	size_t i = 0;

	x = shape(f, &i, "length 5000 in a 40-byte datagram", 1, 0);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x1000, 5000, 27);
	x = shape(f, &i, "length 16000 in a 40-byte datagram", 1, 0);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x1001, 16000, 27);
	x = shape(f, &i, "a record, then length 5000", 1, 1);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x1002, 27, 27);
	x->len += put_record(x->data + x->len, 23, 0xfefd, 1, 0x1003, 5000, 10);
	x = shape(f, &i, "a record, then 5 bytes of a header", 1, 1);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x1004, 27, 27) + 5;
	x = shape(f, &i, "a 7-byte datagram", 1, 0);
	put_record(x->data, 23, 0xfefd, 1, 0x1005, 0, 0);
	x->len = 7;
	x = shape(f, &i, "version 3.3 (TLS)", 1, 0);
	x->len = put_record(x->data, 23, 0x0303, 1, 0x1006, 27, 27);
	x = shape(f, &i, "version 254.0", 1, 0);
	x->len = put_record(x->data, 23, 0xfe00, 1, 0x1007, 27, 27);
	x = shape(f, &i, "content type 99", 1, 0);
	x->len = put_record(x->data, 99, 0xfefd, 1, 0x1008, 27, 27);
	x = shape(f, &i, "epoch 1 garbage", 0, 1);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x1009, 27, 27);
	x = shape(f, &i, "epoch 2 garbage", 0, 1);
	x->len = put_record(x->data, 23, 0xfefd, 2, 0x100a, 27, 27);
	x = shape(f, &i, "epoch 0 application data", 0, 1);
	x->len = put_record(x->data, 23, 0xfefd, 0, 0x100b, 27, 27);
	x = shape(f, &i, "zero-length epoch 1 record", 1, 0);
	x->len = put_record(x->data, 23, 0xfefd, 1, 0x100c, 0, 0);
	x = shape(f, &i, "zero-length epoch 0 handshake", 1, 0);
	x->len = put_record(x->data, 22, 0xfefd, 0, 0x100d, 0, 0);
	x = shape(f, &i, "epoch 0 ChangeCipherSpec", 0, 1);
	x->len = put_record(x->data, 20, 0xfefd, 0, 0x100e, 1, 1);
	x->data[13] = 1;
	x = shape(f, &i, "epoch 0 fatal alert", 0, 1);
	x->len = put_record(x->data, 21, 0xfefd, 0, 0x100f, 2, 2);
	x->data[13] = 2;
	x->data[14] = 40;	/* handshake_failure */
	x = shape(f, &i, "20 epoch 1 records in one datagram", 1, 16);
	for (unsigned k = 0; k < 20; k++)
		x->len += put_record(x->data + x->len, 23, 0xfefd, 1, 0x1100 + k, 1, 1);
	/* RFC 6520 heartbeats travel only in an authenticated epoch: a plaintext
	 * one is a forgery, well-formed or not, and must not reach GnuTLS. */
	x = shape(f, &i, "epoch 0 heartbeat request", 0, 1);
	x->len = put_record(x->data, 24, 0xfefd, 0, 0x1010, 20, 20);
	x->data[13] = 1;	/* heartbeat_request, payload_length 1, payload, 16 of padding */
	x->data[14] = 0;
	x->data[15] = 1;
	x = shape(f, &i, "epoch 0 heartbeat, 3 bytes", 0, 1);
	x->len = put_record(x->data, 24, 0xfefd, 0, 0x1011, 3, 3);
	x->data[13] = 2;	/* heartbeat_response, payload_length 1, and no payload */
	x->data[14] = 0;
	x->data[15] = 1;
	/* At the terminator a ClientHello is a new handshake's first word: it gets
	 * a cookie and is forgotten. At the gateway it is nonsense. */
	x = shape(f, &i, "a ClientHello", 0, to_terminator ? 0 : 1);
	x->len = put_client_hello(x->data);
	x->cookies = to_terminator;
	*n = i;
}

static struct daemon *forge_rx;
static uint64_t forge_seen0;

static uint64_t forge_seen(void)
{
	const struct psktun_stats *st = &forge_rx->stats;

	return st->records_in + st->dropped_malformed + st->cookies_sent + st->dropped_unknown +
	       st->records_discarded;
}

static bool forged_arrived(struct world *w) { return forge_seen() != forge_seen0; }

static void send_forged(struct world *w, bool to_terminator, const struct forged *f)
{
	struct session *gs = w->gw->tunnels->sessions;

	if (to_terminator) {
		assert_int_equal(send(gs->sock->fd, f->data, f->len, 0), (ssize_t)f->len);
	} else {
		struct sockaddr_storage a;
		socklen_t alen = sizeof(a);
		uv_buf_t b = uv_buf_init((char *)f->data, f->len);

		assert_int_equal(getsockname(gs->sock->fd, (struct sockaddr *)&a, &alen), 0);
		assert_int_equal(uv_udp_try_send(&w->term->tunnels->sock, &b, 1, (struct sockaddr *)&a),
				 (int)f->len);
	}
}

/* Requests one at a time; returns how many were answered. */
static unsigned ask_twenty(struct world *w)
{
	unsigned base = w->n_got, cap = 3000;

	for (unsigned i = 0; i < 20; i++) {
		char text[16];

		snprintf(text, sizeof(text), "q%u", i);
		meter_send(w, text);
		want_got = base + i + 1;
		if (!run_until(w, got_enough, cap))
			cap = 300;	/* stalled: do not wait long for the rest */
	}
	want_got = base + 20;
	run_until(w, got_enough, 300);
	return w->n_got - base;
}

static void forged_datagrams_never_stall_a_session(bool to_terminator)
{
	struct forged f[24];
	size_t n;
	unsigned answered[24], malformed[24], discarded[24], cookies[24];
	bool same[24];
	bool all = true;

	forged_shapes(f, &n, to_terminator);
	for (size_t i = 0; i < n; i++) {
		struct world w;
		struct session *s;
		uint64_t mal0, disc0, cookie0;

		world_setup(&w, "", true);
		meter_send(&w, "hello");
		want_got = 1;
		assert_true(run_until(&w, got_enough, 10000));
		forge_rx = to_terminator ? w.term : w.gw;
		s = forge_rx->tunnels->sessions;
		assert_int_equal(s->state, SESSION_ESTABLISHED);
		s->last_rx_ms = 1;	/* a touch would move it */
		mal0 = forge_rx->stats.dropped_malformed;
		disc0 = forge_rx->stats.records_discarded;
		cookie0 = forge_rx->stats.cookies_sent;
		forge_seen0 = forge_seen();
		send_forged(&w, to_terminator, &f[i]);
		assert_true(run_until(&w, forged_arrived, 5000));
		same[i] = forge_rx->tunnels->sessions == s && s->state == SESSION_ESTABLISHED &&
			  s->last_rx_ms == 1 && forge_rx->n_sessions == 1;
		malformed[i] = forge_rx->stats.dropped_malformed - mal0;
		discarded[i] = forge_rx->stats.records_discarded - disc0;
		cookies[i] = forge_rx->stats.cookies_sent - cookie0;
		answered[i] = ask_twenty(&w);
		fprintf(stderr, "forged to the %s: %-36s answered %2u of 20, dropped_malformed +%u, "
			"records_discarded +%u, cookies_sent +%u, session %s\n",
			to_terminator ? "terminator" : "gateway", f[i].name, answered[i], malformed[i],
			discarded[i], cookies[i], same[i] ? "untouched" : "CHANGED");
		world_teardown(&w);
	}
	for (size_t i = 0; i < n; i++)
		all = all && answered[i] == 20 && same[i] && malformed[i] == f[i].malformed &&
		      discarded[i] == f[i].discarded && cookies[i] == f[i].cookies;
	assert_true(all);
}

static void test_forged_datagrams_to_the_terminator_never_stall_a_session(void **state)
{
	forged_datagrams_never_stall_a_session(true);
}

static void test_forged_datagrams_to_the_gateway_never_stall_a_session(void **state)
{
	forged_datagrams_never_stall_a_session(false);
}

static void meter_send_bytes(struct world *w, size_t len)
{
	static char buf[4096];
	struct sockaddr_in a;
	uv_buf_t b = uv_buf_init(buf, len);

	memset(buf, 'x', len);
	uv_ip4_addr("127.0.0.1", w->gw_port, &a);
	assert_int_equal(uv_udp_try_send(&w->meter, &b, 1, (struct sockaddr *)&a), (int)len);
}

static uint64_t want_plain_in;
static bool gw_read_all(struct world *w) { return w->gw->stats.plain_in >= want_plain_in; }

/* mtu 1280 - 13 (record header) - 16 (AES-128-CCM-8's nonce and tag) */
#define PLAIN_MAX 1251

static void test_a_datagram_too_big_for_one_record_is_dropped_on_arrival(void **state)
{
	struct world w;

	world_setup(&w, "", true);
	meter_send_bytes(&w, PLAIN_MAX + 1);
	want_plain_in = 1;
	assert_true(run_until(&w, gw_read_all, 5000));
	assert_int_equal(w.gw->stats.dropped_oversize, 1);
	assert_int_equal(w.gw->queue_budget.used, 0);
	assert_int_equal(w.gw->stats.handshakes_started, 0);	/* no session for it */
	meter_send_bytes(&w, PLAIN_MAX);			/* the largest that fits: queued, sent */
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	assert_int_equal(w.gw->stats.plain_out, 1);
	assert_int_equal(gnutls_dtls_get_data_mtu(w.gw->tunnels->sessions->tls), PLAIN_MAX);
	meter_send_bytes(&w, PLAIN_MAX + 1);			/* established: the same limit */
	want_plain_in = 3;
	assert_true(run_until(&w, gw_read_all, 5000));
	assert_int_equal(w.gw->stats.dropped_oversize, 2);
	assert_int_equal(w.gw->stats.dropped_send, 0);
	assert_int_equal(w.gw->stats.dropped_overflow, 0);
	world_teardown(&w);
}

/* queue_len allows 64, the byte budget 52 of 1251 bytes (65052 <= 65536). */
static void test_the_byte_budget_bounds_what_handshake_queues_hold(void **state)
{
	struct world w;
	struct session *s;

	world_setup(&w, "queue_len = 64; queue_bytes = 65536;", false);	/* nobody answers */
	for (int i = 0; i < 60; i++)
		meter_send_bytes(&w, PLAIN_MAX);
	want_plain_in = 60;
	assert_true(run_until(&w, gw_read_all, 5000));
	s = w.gw->tunnels->sessions;
	assert_non_null(s);
	assert_int_equal(s->queue.n, 52);
	assert_int_equal(w.gw->queue_budget.used, 52 * PLAIN_MAX);
	assert_int_equal(w.gw->stats.dropped_overflow, 8);
	assert_int_equal(w.gw->stats.dropped_oversize, 0);
	world_teardown(&w);
	/* the session's close gave every byte back (teardown freed it) */
}

static void test_a_new_handshake_from_the_same_address_replaces_the_session_once_complete(void **state)
{
	run_client_twice(true);
}

static void test_the_same_identity_from_a_new_address_replaces_its_old_session(void **state)
{
	run_client_twice(false);
}

/*
 * plugin.h: a session a callback was given stays as it is until the callback
 * returns; report_silent (and rehandshake) act only then, so a plugin's
 * session_data is never freed, nor its GnuTLS state reset, under it.
 */
static void test_report_silent_from_a_plugin_callback_acts_after_it_returns(void **state)
{
	struct world w;
	struct session *s;
	gnutls_session_t tls;

	world_setup(&w, "", true);
	meter_send(&w, "ping");
	want_got = 1;
	assert_true(run_until(&w, got_enough, 10000));
	s = session_find_identity(w.gw->tunnels, "meter-0001", 10);
	assert_non_null(s);
	assert_int_equal(s->state, SESSION_ESTABLISHED);
	tls = s->tls;

	plugin_call_begin();		/* as around on_session_timer() */
	plugin_host.report_silent((struct psktun_session *)s);
	plugin_host.report_silent((struct psktun_session *)s);	/* once is enough */
	plugin_host.rehandshake((struct psktun_session *)s);
	assert_int_equal(s->state, SESSION_ESTABLISHED);
	assert_ptr_equal(s->tls, tls);
	assert_int_equal(w.gw->stats.silent_reports, 0);
	assert_int_equal(w.gw->stats.rehandshakes, 0);
	plugin_call_end();

	assert_int_equal(w.gw->stats.silent_reports, 1);
	assert_int_equal(w.gw->stats.rehandshakes, 1);
	/* A gateway's handshake starts from the loop's next check phase
	 * (session.c: start_turn): until then the session waits its turn. */
	assert_int_equal(s->state, SESSION_NEW);
	assert_true(s->waiting);
	assert_int_equal(s->plugin_deferred, 0);
	/* The new handshake completes and carries the next datagram. */
	meter_send(&w, "pong");
	want_got = 2;
	assert_true(run_until(&w, got_enough, 10000));
	assert_string_equal(w.got[1], "pong");
	assert_int_equal(w.gw->stats.handshakes_completed, 2);
	world_teardown(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles_with_jitter_up_to_the_cap),
		cmocka_unit_test(test_queued_datagrams_leave_in_order_once_the_handshake_completes),
		cmocka_unit_test(test_a_full_handshake_queue_counts_overflow),
		cmocka_unit_test(test_a_lost_client_hello_is_retransmitted),
		cmocka_unit_test(test_a_failed_handshake_backs_off_exponentially_and_retries),
		cmocka_unit_test(test_an_idle_session_closes_with_close_notify),
		cmocka_unit_test(test_after_a_nat_rebinding_the_next_retry_is_answered),
		cmocka_unit_test(test_tickets_resume_with_a_key_from_a_file),
		cmocka_unit_test(test_forged_records_do_not_keep_a_session_alive),
		cmocka_unit_test(test_a_datagram_of_too_many_records_is_cut_and_counted),
		cmocka_unit_test(test_forged_datagrams_to_the_terminator_never_stall_a_session),
		cmocka_unit_test(test_a_datagram_too_big_for_one_record_is_dropped_on_arrival),
		cmocka_unit_test(test_the_byte_budget_bounds_what_handshake_queues_hold),
		cmocka_unit_test(test_forged_datagrams_to_the_gateway_never_stall_a_session),
		cmocka_unit_test(test_a_new_handshake_from_the_same_address_replaces_the_session_once_complete),
		cmocka_unit_test(test_the_same_identity_from_a_new_address_replaces_its_old_session),
		cmocka_unit_test(test_report_silent_from_a_plugin_callback_acts_after_it_returns),
	};

	psktun_log_init(true, getenv("PSKTUN_TEST_VERBOSE") ? 3 : 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

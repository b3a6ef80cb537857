/* hsmem: GnuTLS's own DTLS-PSK limits on one core: client/server pairs handshaking, then sealing records, in memory. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <gnutls/dtls.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* psktund's default (agent/config.h PSKTUN_DEFAULT_PRIORITY); -p overrides it. */
#define DEFAULT_PRIORITY \
	"NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+COMP-NULL:+SIGN-ECDSA-SHA256:%NO_TICKETS"
#define QLEN 64
#define DGRAM_MAX 2048
#define PAYLOAD 64

/* One direction of the wire: datagrams keep their boundaries. */
struct wire {
	unsigned char buf[QLEN][DGRAM_MAX];
	size_t len[QLEN];
	unsigned head, count;
	uint64_t bytes, datagrams;	/* since the last reset */
};

/* A session's ends of the two wires. */
struct end {
	struct wire *in, *out;
};

static const unsigned char psk_key[16] = "0123456789abcdef";

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static ssize_t wire_push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
	struct end *e = p;
	struct wire *w = e->out;

	if (w->count == QLEN || n > DGRAM_MAX) {
		errno = ENOBUFS;
		return -1;
	}
	unsigned i = (w->head + w->count) % QLEN;
	memcpy(w->buf[i], data, n);
	w->len[i] = n;
	w->count++;
	w->bytes += n;
	w->datagrams++;
	return (ssize_t)n;
}

static ssize_t wire_pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	struct end *e = p;
	struct wire *w = e->in;
	size_t len;

	if (w->count == 0) {
		errno = EAGAIN;
		return -1;
	}
	len = w->len[w->head] < n ? w->len[w->head] : n;
	memcpy(data, w->buf[w->head], len);
	w->head = (w->head + 1) % QLEN;
	w->count--;
	return (ssize_t)len;
}

static int wire_pull_timeout(gnutls_transport_ptr_t p, unsigned ms)
{
	struct end *e = p;

	return e->in->count > 0;
}

static int server_psk(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	key->data = gnutls_malloc(sizeof(psk_key));
	if (!key->data)
		return -1;
	memcpy(key->data, psk_key, sizeof(psk_key));
	key->size = sizeof(psk_key);
	return 0;
}

static void check(int r, const char *what)
{
	if (r < 0) {
		fprintf(stderr, "hsmem: %s: %s\n", what, gnutls_strerror(r));
		exit(1);
	}
}

static gnutls_session_t session_new(unsigned flags, const char *prio, struct end *e,
				    gnutls_psk_client_credentials_t cc, gnutls_psk_server_credentials_t sc)
{
	gnutls_session_t s;

	check(gnutls_init(&s, flags | GNUTLS_DATAGRAM | GNUTLS_NONBLOCK), "gnutls_init");
	check(gnutls_priority_set_direct(s, prio, NULL), "priority");
	check(gnutls_credentials_set(s, GNUTLS_CRD_PSK, cc ? (void *)cc : (void *)sc), "credentials");
	gnutls_transport_set_ptr(s, e);
	gnutls_transport_set_push_function(s, wire_push);
	gnutls_transport_set_pull_function(s, wire_pull);
	gnutls_transport_set_pull_timeout_function(s, wire_pull_timeout);
	gnutls_dtls_set_mtu(s, 1280);
	return s;
}

/* Drive both ends until both finish: nothing is ever lost, so no timers are needed. */
static void handshake_pair(gnutls_session_t c, gnutls_session_t s)
{
	bool cdone = false, sdone = false;
	int r, rounds = 0;

	while (!cdone || !sdone) {
		if (!cdone) {
			r = gnutls_handshake(c);
			if (r == 0)
				cdone = true;
			else if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
				check(r, "client handshake");
		}
		if (!sdone) {
			r = gnutls_handshake(s);
			if (r == 0)
				sdone = true;
			else if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
				check(r, "server handshake");
		}
		if (++rounds > 100) {
			fprintf(stderr, "hsmem: handshake does not finish\n");
			exit(1);
		}
	}
}

int main(int argc, char **argv)
{
	static struct wire c2s, s2c;
	struct end cend = { .in = &s2c, .out = &c2s }, send_ = { .in = &c2s, .out = &s2c };
	gnutls_psk_client_credentials_t cc;
	gnutls_psk_server_credentials_t sc;
	gnutls_datum_t key = { (unsigned char *)psk_key, sizeof(psk_key) };
	const char *prio = DEFAULT_PRIORITY;
	double secs = 2;
	uint64_t t0, t, n = 0, hs_c_bytes = 0, hs_c_dg = 0, hs_s_bytes = 0, hs_s_dg = 0;
	unsigned char payload[PAYLOAD], back[DGRAM_MAX];
	size_t record_len = 0;
	int opt;

	while ((opt = getopt(argc, argv, "d:p:")) != -1) {
		switch (opt) {
		case 'd': secs = atof(optarg); break;
		case 'p': prio = optarg; break;
		default:
			fprintf(stderr, "usage: hsmem [-d SECONDS] [-p PRIORITY]\n");
			return 2;
		}
	}
	check(gnutls_global_init(), "global_init");
	check(gnutls_psk_allocate_client_credentials(&cc), "client credentials");
	check(gnutls_psk_set_client_credentials(cc, "meter-bench", &key, GNUTLS_PSK_KEY_RAW), "client key");
	check(gnutls_psk_allocate_server_credentials(&sc), "server credentials");
	gnutls_psk_set_server_credentials_function(sc, server_psk);
	memset(payload, 0x5a, sizeof(payload));

	/* Handshakes: a new pair each time, init to deinit, as a daemon pays for them. */
	t0 = now_ns();
	do {
		gnutls_session_t c = session_new(GNUTLS_CLIENT, prio, &cend, cc, NULL);
		gnutls_session_t s = session_new(GNUTLS_SERVER, prio, &send_, NULL, sc);

		c2s.bytes = c2s.datagrams = s2c.bytes = s2c.datagrams = 0;
		c2s.count = s2c.count = 0;
		handshake_pair(c, s);
		if (n == 0) {
			hs_c_bytes = c2s.bytes, hs_c_dg = c2s.datagrams;
			hs_s_bytes = s2c.bytes, hs_s_dg = s2c.datagrams;
			check((int)gnutls_record_send(c, payload, sizeof(payload)), "record_send");
			record_len = c2s.len[(c2s.head + c2s.count - 1) % QLEN];
			c2s.count = 0;
		}
		gnutls_deinit(c);
		gnutls_deinit(s);
		n++;
		t = now_ns();
	} while (t - t0 < (uint64_t)(secs * 1e9));
	printf("handshakes=%" PRIu64 "\nhandshake_rate=%.1f\n", n, (double)n / ((double)(t - t0) / 1e9));
	printf("handshake_bytes=%" PRIu64 "\nhandshake_datagrams=%" PRIu64 "\n", hs_c_bytes + hs_s_bytes,
	       hs_c_dg + hs_s_dg);
	printf("handshake_client_bytes=%" PRIu64 "\nhandshake_server_bytes=%" PRIu64 "\n", hs_c_bytes,
	       hs_s_bytes);
	printf("record_len_64=%zu\nrecord_overhead=%zu\n", record_len, record_len - PAYLOAD);

	/* Records: seal on one end and open on the other, 64 bytes each, on one established pair. */
	{
		gnutls_session_t c = session_new(GNUTLS_CLIENT, prio, &cend, cc, NULL);
		gnutls_session_t s = session_new(GNUTLS_SERVER, prio, &send_, NULL, sc);
		uint64_t r = 0;

		c2s.count = s2c.count = 0;
		handshake_pair(c, s);
		t0 = now_ns();
		do {
			for (int i = 0; i < 1000; i++, r++) {
				check((int)gnutls_record_send(c, payload, sizeof(payload)), "record_send");
				check((int)gnutls_record_recv(s, back, sizeof(back)), "record_recv");
			}
			t = now_ns();
		} while (t - t0 < (uint64_t)(secs * 1e9));
		printf("records=%" PRIu64 "\nrecord_rate=%.1f\n", r, (double)r / ((double)(t - t0) / 1e9));
		gnutls_deinit(c);
		gnutls_deinit(s);
	}
	gnutls_psk_free_client_credentials(cc);
	gnutls_psk_free_server_credentials(sc);
	gnutls_global_deinit();
	return 0;
}

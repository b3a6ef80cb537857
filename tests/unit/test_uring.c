/* test_uring: the io_uring send path: one submission a loop iteration, bounded, in order, early when the slots run out. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <uv.h>
#include "uring.h"

struct pair {
	int tx, rx;		/* tx connected to rx, both on 127.0.0.1 */
};

static void pair_open(struct pair *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int big = 4 << 20;

	p->rx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(p->rx >= 0);
	setsockopt(p->rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	assert_int_equal(bind(p->rx, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(p->rx, (struct sockaddr *)&a, &len), 0);
	p->tx = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	assert_true(p->tx >= 0);
	assert_int_equal(connect(p->tx, (struct sockaddr *)&a, sizeof(a)), 0);
}

static void pair_close(struct pair *p)
{
	close(p->tx);
	close(p->rx);
}

/* The datagrams rx holds now, each checked to carry its sequence number. */
static unsigned drain_in_order(int fd, unsigned first)
{
	uint32_t buf[512];
	unsigned n = 0;
	ssize_t r;

	while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
		assert_int_equal(r, sizeof(uint32_t));
		assert_int_equal(buf[0], first + n);
		n++;
	}
	return n;
}

static struct uring_tx *ring_or_skip(uv_loop_t *loop, uint64_t *dsend, uint64_t *dring)
{
	struct uring_tx *u = NULL;
	const char *why = NULL;

	unsetenv("PSKTUN_IO_URING");
	if (uring_tx_new(loop, dsend, dring, &u, &why) < 0) {
		print_message("no ring here (%s): skipped\n", why);
		return NULL;
	}
	return u;
}

/* What one loop iteration queues leaves in one submission, in order; when it
 * queues more than URING_SLOTS, those queued are submitted as the slots run
 * out (they complete during the submission): none dropped, nothing waits. */
static void test_more_sends_than_slots_are_submitted_early_not_dropped(void **state)
{
	uv_loop_t loop;
	uint64_t dsend = 0, dring = 0;
	struct uring_tx *u;
	struct pair p;
	unsigned extra = 10;

	uv_loop_init(&loop);
	u = ring_or_skip(&loop, &dsend, &dring);
	if (!u) {
		uv_loop_close(&loop);
		skip();
	}
	pair_open(&p);
	for (uint32_t i = 0; i < URING_SLOTS; i++)
		assert_int_equal(uring_tx_send(u, p.tx, &i, sizeof(i)), 0);
	/* Nothing has left yet: the loop's check phase submits. */
	assert_int_equal(drain_in_order(p.rx, 0), 0);
	for (uint32_t i = URING_SLOTS; i < URING_SLOTS + extra; i++)
		assert_int_equal(uring_tx_send(u, p.tx, &i, sizeof(i)), 0);
	assert_int_equal(dring, 0);
	/* The first URING_SLOTS left when the slots ran out, the rest with the loop. */
	assert_int_equal(drain_in_order(p.rx, 0), URING_SLOTS);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(drain_in_order(p.rx, URING_SLOTS), extra);
	assert_int_equal(dsend, 0);
	/* The slots are free again. */
	for (uint32_t i = 0; i < URING_SLOTS; i++)
		assert_int_equal(uring_tx_send(u, p.tx, &i, sizeof(i)), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(drain_in_order(p.rx, 0), URING_SLOTS);
	assert_int_equal(dring, 0);
	uring_tx_close(u);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	pair_close(&p);
}

/* A datagram bigger than a slot is the caller's; a flush sends what is queued first. */
static void test_big_datagram_is_the_callers_after_a_flush(void **state)
{
	uv_loop_t loop;
	uint64_t dsend = 0, dring = 0;
	struct uring_tx *u;
	struct pair p;
	static uint8_t big[URING_SLOT_BYTES + 1];
	uint32_t one = 0;

	uv_loop_init(&loop);
	u = ring_or_skip(&loop, &dsend, &dring);
	if (!u) {
		uv_loop_close(&loop);
		skip();
	}
	pair_open(&p);
	assert_int_equal(uring_tx_send(u, p.tx, &one, sizeof(one)), 0);
	assert_int_equal(uring_tx_send(u, p.tx, big, sizeof(big)), -EMSGSIZE);
	uring_tx_flush(u);
	assert_int_equal(drain_in_order(p.rx, 0), 1);
	uring_tx_close(u);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	pair_close(&p);
}

/* A send the kernel refuses (ICMP port unreachable) is counted as dropped_send. */
static void test_refused_send_counts_dropped_send(void **state)
{
	uv_loop_t loop;
	uint64_t dsend = 0, dring = 0;
	struct uring_tx *u;
	struct pair p;
	uint32_t v = 0;

	uv_loop_init(&loop);
	u = ring_or_skip(&loop, &dsend, &dring);
	if (!u) {
		uv_loop_close(&loop);
		skip();
	}
	pair_open(&p);
	close(p.rx);		/* the next send meets port unreachable, the one after ECONNREFUSED */
	p.rx = socket(AF_INET, SOCK_DGRAM, 0);
	assert_int_equal(send(p.tx, &v, sizeof(v), 0), sizeof(v));
	for (int i = 0; i < 100 && !dsend; i++) {
		assert_int_equal(uring_tx_send(u, p.tx, &v, sizeof(v)), 0);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	assert_int_equal(dsend, 1);
	uring_tx_close(u);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	pair_close(&p);
}

/* PSKTUN_IO_URING=0: no ring, and the reason. */
static void test_environment_turns_it_off(void **state)
{
	uv_loop_t loop;
	uint64_t dsend = 0, dring = 0;
	struct uring_tx *u = NULL;
	const char *why = NULL;

	uv_loop_init(&loop);
	setenv("PSKTUN_IO_URING", "0", 1);
	assert_true(uring_tx_new(&loop, &dsend, &dring, &u, &why) < 0);
	assert_null(u);
	assert_non_null(why);
	unsetenv("PSKTUN_IO_URING");
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_more_sends_than_slots_are_submitted_early_not_dropped),
		cmocka_unit_test(test_big_datagram_is_the_callers_after_a_flush),
		cmocka_unit_test(test_refused_send_counts_dropped_send),
		cmocka_unit_test(test_environment_turns_it_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

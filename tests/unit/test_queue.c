/* test_queue: the handshake queues, each bounded in datagrams, all together in bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "queue.h"

static uint8_t bytes[2000];

static void test_a_queue_holds_at_most_its_number_of_datagrams(void **state)
{
	struct dgram_budget b = { 0, 1 << 20 };
	struct dgram_queue q;

	dgram_queue_init(&q, 3, &b);
	for (int i = 0; i < 3; i++)
		assert_int_equal(dgram_queue_push(&q, bytes, 10), 0);
	assert_int_equal(dgram_queue_push(&q, bytes, 10), -ENOBUFS);
	assert_int_equal(q.n, 3);
	assert_int_equal(b.used, 30);
	assert_int_equal(dgram_queue_clear(&q), 3);
	assert_int_equal(b.used, 0);
}

static void test_all_queues_share_one_byte_budget(void **state)
{
	struct dgram_budget b = { 0, 1000 };
	struct dgram_queue q1, q2;
	struct dgram *d;

	dgram_queue_init(&q1, 8, &b);
	dgram_queue_init(&q2, 8, &b);
	assert_int_equal(dgram_queue_push(&q1, bytes, 600), 0);
	assert_int_equal(dgram_queue_push(&q2, bytes, 401), -ENOBUFS);	/* 1001 > 1000 */
	assert_int_equal(dgram_queue_push(&q2, bytes, 400), 0);		/* exactly full */
	assert_int_equal(b.used, 1000);
	assert_int_equal(dgram_queue_push(&q1, bytes, 1), -ENOBUFS);
	d = dgram_queue_pop(&q1);				/* the bytes go back */
	assert_non_null(d);
	assert_int_equal(d->len, 600);
	free(d);
	assert_int_equal(b.used, 400);
	assert_int_equal(dgram_queue_push(&q2, bytes, 600), 0);
	assert_int_equal(q2.n, 2);
	assert_int_equal(dgram_queue_clear(&q2), 2);
	assert_int_equal(dgram_queue_clear(&q1), 0);
	assert_int_equal(b.used, 0);
}

/* A reload may lower the budget below what is queued: nothing more until it drains. */
static void test_a_budget_lowered_below_what_is_held_takes_nothing_more(void **state)
{
	struct dgram_budget b = { 0, 2000 };
	struct dgram_queue q;

	dgram_queue_init(&q, 8, &b);
	assert_int_equal(dgram_queue_push(&q, bytes, 1500), 0);
	b.max = 1000;
	assert_int_equal(dgram_queue_push(&q, bytes, 1), -ENOBUFS);
	assert_int_equal(dgram_queue_push(&q, bytes, 0), 0);	/* an empty datagram costs nothing */
	assert_int_equal(dgram_queue_clear(&q), 2);
	assert_int_equal(b.used, 0);
	assert_int_equal(dgram_queue_push(&q, bytes, 1000), 0);
	assert_int_equal(dgram_queue_clear(&q), 1);
}

/* 1,000 meters, each with a full queue of the largest datagrams: the budget, not the meters, sets the memory. */
static void test_a_thousand_full_queues_stay_within_the_budget(void **state)
{
	struct dgram_budget b = { 0, 4u << 20 };
	static struct dgram_queue q[1000];
	unsigned queued = 0, refused = 0;

	for (int i = 0; i < 1000; i++) {
		dgram_queue_init(&q[i], 8, &b);
		for (int k = 0; k < 9; k++) {
			if (dgram_queue_push(&q[i], bytes, 1251) == 0)
				queued++;
			else
				refused++;
		}
	}
	assert_int_equal(queued, (4u << 20) / 1251);	/* 3352 */
	assert_int_equal(refused, 9000 - (4u << 20) / 1251);
	assert_int_equal(b.used, (size_t)queued * 1251);
	assert_true(b.used <= b.max);
	for (int i = 0; i < 1000; i++)
		dgram_queue_clear(&q[i]);
	assert_int_equal(b.used, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_queue_holds_at_most_its_number_of_datagrams),
		cmocka_unit_test(test_all_queues_share_one_byte_budget),
		cmocka_unit_test(test_a_budget_lowered_below_what_is_held_takes_nothing_more),
		cmocka_unit_test(test_a_thousand_full_queues_stay_within_the_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

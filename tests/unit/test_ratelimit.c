/* test_ratelimit: per-source token buckets: burst, refill at `rate`, by IP without the port. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "addr.h"
#include "ratelimit.h"

static struct ratelimit *rl;

static const struct sockaddr *ip(const char *text, unsigned short port)
{
	static struct sockaddr_in a[4];
	static unsigned next;
	struct sockaddr_in *s = &a[next++ % 4];

	memset(s, 0, sizeof(*s));
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, text, &s->sin_addr), 1);
	return (const struct sockaddr *)s;
}

static int setup(void **state)
{
	rl = malloc(sizeof(*rl));
	assert_non_null(rl);
	return 0;
}

static int teardown(void **state)
{
	free(rl);
	return 0;
}

/* How many tokens one source gets at `now` (taking until refused). */
static unsigned drain(const struct sockaddr *from, uint64_t now)
{
	unsigned n = 0;

	while (ratelimit_take(rl, from, now))
		assert_true(++n < 1000);
	return n;
}

static void test_a_new_source_has_a_full_burst_then_is_refused(void **state)
{
	ratelimit_init(rl, 10, 3);
	assert_int_equal(drain(ip("192.0.2.1", 1000), 5000), 3);
	assert_false(ratelimit_take(rl, ip("192.0.2.1", 1000), 5000));
}

static void test_tokens_come_back_at_rate_per_second(void **state)
{
	ratelimit_init(rl, 10, 3);	/* one token per 100 ms */
	assert_int_equal(drain(ip("192.0.2.1", 1), 5000), 3);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5099), 0);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5100), 1);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5350), 2);	/* 250 ms: two, and a half kept */
	assert_int_equal(drain(ip("192.0.2.1", 1), 5400), 1);	/* the half and 50 ms more */
}

static void test_refill_stops_at_the_burst(void **state)
{
	ratelimit_init(rl, 10, 3);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5000), 3);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5000 + 3600 * 1000), 3);
}

static void test_the_port_is_ignored_and_other_ips_are_not_charged(void **state)
{
	const struct sockaddr *a = ip("192.0.2.1", 1000), *b = ip("192.0.2.2", 1000);

	/* precondition: the two addresses do not share a slot */
	assert_int_not_equal(psktun_addr_hash(a, false) % RATELIMIT_SLOTS,
			     psktun_addr_hash(b, false) % RATELIMIT_SLOTS);
	ratelimit_init(rl, 1, 2);
	assert_int_equal(drain(ip("192.0.2.1", 1000), 5000), 2);
	assert_false(ratelimit_take(rl, ip("192.0.2.1", 2000), 5000));	/* another port, same IP */
	assert_int_equal(drain(b, 5000), 2);
}

static void test_a_rate_of_zero_is_unlimited(void **state)
{
	ratelimit_init(rl, 0, 0);
	for (int i = 0; i < 10000; i++)
		assert_true(ratelimit_take(rl, ip("192.0.2.1", 1), 5000));
}

static void test_a_burst_of_zero_means_one(void **state)
{
	ratelimit_init(rl, 1, 0);
	assert_int_equal(rl->burst, 1);
	assert_int_equal(drain(ip("192.0.2.1", 1), 5000), 1);
	assert_int_equal(drain(ip("192.0.2.1", 1), 6000), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_new_source_has_a_full_burst_then_is_refused),
		cmocka_unit_test(test_tokens_come_back_at_rate_per_second),
		cmocka_unit_test(test_refill_stops_at_the_burst),
		cmocka_unit_test(test_the_port_is_ignored_and_other_ips_are_not_charged),
		cmocka_unit_test(test_a_rate_of_zero_is_unlimited),
		cmocka_unit_test(test_a_burst_of_zero_means_one),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

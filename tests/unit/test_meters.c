/* test_meters: the log limit behind the failure and unknown-source lines, and the reasons' names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "meters.h"

static void test_a_source_is_logged_the_first_time_then_once_a_minute(void **state)
{
	static struct loglimit ll;
	uint64_t n = 99;

	memset(&ll, 0, sizeof(ll));
	assert_true(psktun_loglimit_take(&ll, 7, 1000, &n));
	assert_int_equal(n, 0);
	assert_false(psktun_loglimit_take(&ll, 7, 2000, &n));
	assert_false(psktun_loglimit_take(&ll, 7, 1000 + LOGLIMIT_INTERVAL_MS - 1, &n));
	/* another source is not held back by this one */
	assert_true(psktun_loglimit_take(&ll, 8, 3000, &n));
	assert_true(psktun_loglimit_take(&ll, 7, 1000 + LOGLIMIT_INTERVAL_MS, &n));
	assert_int_equal(n, 2);		/* the line says how many were held back */
	assert_false(psktun_loglimit_take(&ll, 7, 1000 + LOGLIMIT_INTERVAL_MS + 1, &n));
}

static void test_a_flood_of_sources_gets_a_bounded_number_of_lines(void **state)
{
	static struct loglimit ll;
	unsigned logged = 0;
	uint64_t n;

	memset(&ll, 0, sizeof(ll));
	for (uint64_t key = 1; key <= 10000; key++)
		logged += psktun_loglimit_take(&ll, key * 0x9e3779b97f4a7c15ull, 5000 + key, &n);
	assert_int_equal(logged, LOGLIMIT_PER_MINUTE);
	/* a minute later there is room again */
	assert_true(psktun_loglimit_take(&ll, 424242, 5000 + 10000 + 60000, &n));
}

static void test_failure_reasons_have_names_and_texts_per_role(void **state)
{
	assert_string_equal(psktun_failure_slug(PSKTUN_FAIL_wrong_key), "wrong_key");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_wrong_key, false),
			    "the client's Finished did not verify: wrong key?");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_wrong_key, true),
			    "our Finished was not accepted: wrong key?");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_silent, false),
			    "the client went silent after the cookie");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_no_answer, true), "no answer from the server");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_unknown_identity, false), "unknown identity");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_too_many_handshakes, false), "too many handshakes");
	assert_string_equal(psktun_failure_text(PSKTUN_FAIL_peer_alert, true), "the server ended the handshake");
	for (int f = 0; f < PSKTUN_FAIL_MAX; f++)
		for (int g = f + 1; g < PSKTUN_FAIL_MAX; g++)
			assert_string_not_equal(psktun_failure_slug(f), psktun_failure_slug(g));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_source_is_logged_the_first_time_then_once_a_minute),
		cmocka_unit_test(test_a_flood_of_sources_gets_a_bounded_number_of_lines),
		cmocka_unit_test(test_failure_reasons_have_names_and_texts_per_role),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

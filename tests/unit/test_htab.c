/* test_htab: the intrusive hash table (sizes, chains, growth, removal) and the keyed hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "htab.h"

struct item {
	int value;
	struct htab_node node;
};

/* The items whose hash is `hash`, as a bit set of their values (0..63). */
static uint64_t found(const struct htab *h, uint64_t hash)
{
	uint64_t set = 0;

	for (struct htab_node *n = htab_first(h, hash); n; n = htab_next(n, hash))
		set |= 1ULL << container_of(n, struct item, node)->value;
	return set;
}

static void test_buckets_are_a_power_of_two_of_at_least_16(void **state)
{
	struct htab h;

	assert_int_equal(htab_init(&h, 0), 0);
	assert_int_equal(h.mask, 15);
	assert_int_equal(h.n, 0);
	htab_deinit(&h);
	assert_int_equal(htab_init(&h, 17), 0);
	assert_int_equal(h.mask, 31);
	htab_deinit(&h);
	assert_null(h.bucket);
}

static void test_a_walk_yields_exactly_the_nodes_of_that_hash(void **state)
{
	struct item it[4] = { { .value = 0 }, { .value = 1 }, { .value = 2 }, { .value = 3 } };
	struct htab h;

	assert_int_equal(htab_init(&h, 16), 0);
	htab_insert(&h, &it[0].node, 1);
	htab_insert(&h, &it[1].node, 17);	/* the same bucket as 1 */
	htab_insert(&h, &it[2].node, 1);	/* the same hash as it[0] */
	htab_insert(&h, &it[3].node, 2);
	assert_int_equal(h.n, 4);
	assert_int_equal(found(&h, 1), 0x5);
	assert_int_equal(found(&h, 17), 0x2);
	assert_int_equal(found(&h, 2), 0x8);
	assert_int_equal(found(&h, 33), 0);
	htab_deinit(&h);
}

static void test_removal_takes_out_that_node_only(void **state)
{
	struct item it[3] = { { .value = 0 }, { .value = 1 }, { .value = 2 } };
	struct htab h;

	assert_int_equal(htab_init(&h, 16), 0);
	for (int i = 0; i < 3; i++)
		htab_insert(&h, &it[i].node, 7);
	htab_remove(&h, &it[1].node);
	assert_int_equal(h.n, 2);
	assert_int_equal(found(&h, 7), 0x5);
	assert_null(it[1].node.next);
	htab_remove(&h, &it[0].node);
	htab_remove(&h, &it[2].node);
	assert_int_equal(h.n, 0);
	assert_int_equal(found(&h, 7), 0);
	htab_deinit(&h);
}

static void test_the_table_doubles_when_full_and_keeps_every_node(void **state)
{
	struct item it[40];
	struct htab h;

	assert_int_equal(htab_init(&h, 16), 0);
	for (int i = 0; i < 16; i++) {
		it[i].value = i;
		htab_insert(&h, &it[i].node, (uint64_t)i * 16);	/* all in bucket 0 of 16 */
	}
	assert_int_equal(h.mask, 15);
	it[16].value = 16;
	htab_insert(&h, &it[16].node, 16 * 16);
	assert_int_equal(h.mask, 31);
	for (int i = 17; i < 40; i++) {
		it[i].value = i;
		htab_insert(&h, &it[i].node, (uint64_t)i * 16);
	}
	assert_int_equal(h.mask, 63);
	assert_int_equal(h.n, 40);
	for (int i = 0; i < 40; i++)
		assert_int_equal(found(&h, (uint64_t)i * 16), 1ULL << i);
	htab_deinit(&h);
}

static void test_the_hash_depends_on_every_byte_and_the_length(void **state)
{
	const char a[] = "meter-0001", b[] = "meter-0002";

	assert_int_equal(psktun_hash(a, 10), psktun_hash(a, 10));
	assert_int_not_equal(psktun_hash(a, 10), psktun_hash(b, 10));
	assert_int_not_equal(psktun_hash(a, 10), psktun_hash(a, 9));
	assert_int_not_equal(psktun_hash("", 0), psktun_hash("\0", 1));
}

/* Last: the seed is process-wide and set once. */
static void test_the_seed_changes_the_hash_once_and_for_all(void **state)
{
	uint64_t before = psktun_hash("meter-0001", 10), seeded;

	psktun_hash_seed(0x1234);
	seeded = psktun_hash("meter-0001", 10);
	assert_int_not_equal(seeded, before);
	psktun_hash_seed(0x5678);	/* too late: tables may hold hashes of the first seed */
	assert_int_equal(psktun_hash("meter-0001", 10), seeded);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_are_a_power_of_two_of_at_least_16),
		cmocka_unit_test(test_a_walk_yields_exactly_the_nodes_of_that_hash),
		cmocka_unit_test(test_removal_takes_out_that_node_only),
		cmocka_unit_test(test_the_table_doubles_when_full_and_keeps_every_node),
		cmocka_unit_test(test_the_hash_depends_on_every_byte_and_the_length),
		cmocka_unit_test(test_the_seed_changes_the_hash_once_and_for_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

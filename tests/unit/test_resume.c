/* test_resume: the bounded resumption store: round trip, LRU, replacement, expiry, key changes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <gnutls/crypto.h>
#include "resume.h"
#include "tmpdir.h"

#define KEY1 "00112233445566778899aabbccddeeff"
#define KEY2 "ffeeddccbbaa99887766554433221100"
#define NOW 1000000

static struct psktun_keys *keys;
static struct resume_store rs;

/* meter-0001 and meter-0002 with these keys. */
static void load_keys(const char *key1)
{
	struct psktun_diag diag;

	psktun_keys_free(keys);
	keys = NULL;
	psktun_diag_init(&diag);
	assert_int_equal(psktun_keys_load(test_write_str("keys.psk", key1, 0600), true, &keys, &diag),
			 0);
	psktun_diag_deinit(&diag);
}

static int setup(void **state)
{
	test_dir_make();
	load_keys("meter-0001:" KEY1 "\nmeter-0002:" KEY2 "\n");
	return 0;
}

static int teardown(void **state)
{
	resume_store_deinit(&rs);
	psktun_keys_free(keys);
	keys = NULL;
	test_dir_remove();
	return 0;
}

/* What a session up with `id`'s current key would store. */
static void digest_of(const char *id, uint8_t digest[32])
{
	const struct psktun_key *k = psktun_keys_find(keys, id, strlen(id));

	assert_non_null(k);
	assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, k->key, k->key_len, digest), 0);
}

static int put(const char *key, const char *data, const char *id, uint64_t now)
{
	gnutls_datum_t d = { (unsigned char *)data, (unsigned)strlen(data) };
	uint8_t digest[32];

	digest_of(id, digest);
	return resume_put(&rs, key, strlen(key), &d, id, strlen(id), digest, now);
}

/* The data stored under key, as a string, or NULL. */
static const char *get(const char *key, uint64_t now)
{
	static char buf[256];
	const gnutls_datum_t *d = resume_get(&rs, key, strlen(key), keys, now);

	if (!d)
		return NULL;
	assert_true(d->size < sizeof(buf));
	memcpy(buf, d->data, d->size);
	buf[d->size] = '\0';
	return buf;
}

static void test_what_is_put_is_got_back(void **state)
{
	assert_int_equal(resume_store_init(&rs, 8), 0);
	assert_int_equal(put("sid-a", "state-a", "meter-0001", NOW), 0);
	assert_int_equal(put("sid-b", "state-b", "meter-0002", NOW), 0);
	assert_string_equal(get("sid-a", NOW), "state-a");
	assert_string_equal(get("sid-b", NOW), "state-b");
	assert_null(get("sid-c", NOW));
	assert_int_equal(rs.n, 2);
}

static void test_the_same_key_replaces_its_entry(void **state)
{
	assert_int_equal(resume_store_init(&rs, 8), 0);
	assert_int_equal(put("sid-a", "old", "meter-0001", NOW), 0);
	assert_int_equal(put("sid-a", "new", "meter-0001", NOW), 0);
	assert_int_equal(rs.n, 1);
	assert_string_equal(get("sid-a", NOW), "new");
}

static void test_the_least_recently_used_goes_first_when_full(void **state)
{
	assert_int_equal(resume_store_init(&rs, 2), 0);
	assert_int_equal(put("sid-a", "a", "meter-0001", NOW), 0);
	assert_int_equal(put("sid-b", "b", "meter-0001", NOW), 0);
	assert_string_equal(get("sid-a", NOW), "a");	/* a is now the most recent */
	assert_int_equal(put("sid-c", "c", "meter-0001", NOW), 0);
	assert_int_equal(rs.n, 2);
	assert_null(get("sid-b", NOW));
	assert_string_equal(get("sid-a", NOW), "a");
	assert_string_equal(get("sid-c", NOW), "c");
}

static void test_an_entry_expires_after_its_lifetime(void **state)
{
	assert_int_equal(resume_store_init(&rs, 8), 0);
	assert_int_equal(put("sid-a", "a", "meter-0001", NOW), 0);
	assert_string_equal(get("sid-a", NOW + PSKTUN_RESUME_LIFETIME_S - 1), "a");
	assert_null(get("sid-a", NOW + PSKTUN_RESUME_LIFETIME_S));
	assert_int_equal(rs.n, 0);	/* dropped on use */
	assert_int_equal(rs.bytes, 0);
}

static void test_a_changed_or_removed_key_makes_its_entries_useless(void **state)
{
	assert_int_equal(resume_store_init(&rs, 8), 0);
	assert_int_equal(put("sid-a", "a", "meter-0001", NOW), 0);
	assert_int_equal(put("sid-b", "b", "meter-0002", NOW), 0);
	load_keys("meter-0001:" KEY2 "\n");	/* a reload: a new key, meter-0002 gone */
	assert_null(get("sid-a", NOW));
	assert_null(get("sid-b", NOW));
	assert_int_equal(rs.n, 0);
}

static void test_bytes_count_what_entries_hold_and_a_gateway_stores_its_key_once(void **state)
{
	uint64_t by_session;

	assert_int_equal(resume_store_init(&rs, 8), 0);
	/* terminator: keyed by a 10-byte session ID, the identity stored beside it */
	assert_int_equal(put("0123456789", "data", "meter-0001", NOW), 0);
	by_session = rs.bytes;
	resume_del(&rs, "0123456789", 10);
	assert_int_equal(rs.n, 0);
	assert_int_equal(rs.bytes, 0);
	/* gateway: keyed by the identity itself, stored once: 10 bytes fewer */
	assert_int_equal(put("meter-0001", "data", "meter-0001", NOW), 0);
	assert_int_equal(rs.bytes, by_session - 10);
	assert_string_equal(get("meter-0001", NOW), "data");
}

static void test_what_cannot_be_stored_is_refused(void **state)
{
	char long_key[130];

	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	assert_int_equal(resume_store_init(&rs, 8), 0);
	assert_int_equal(put(long_key, "a", "meter-0001", NOW), -EINVAL);	/* 129 > 128 */
	assert_int_equal(put("sid-a", "", "meter-0001", NOW), -EINVAL);
	assert_int_equal(rs.n, 0);
	resume_store_deinit(&rs);
	assert_int_equal(resume_store_init(&rs, 0), 0);		/* max 0: resumption off */
	assert_int_equal(put("sid-a", "a", "meter-0001", NOW), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_what_is_put_is_got_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_same_key_replaces_its_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_the_least_recently_used_goes_first_when_full, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_an_entry_expires_after_its_lifetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_changed_or_removed_key_makes_its_entries_useless,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_bytes_count_what_entries_hold_and_a_gateway_stores_its_key_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_what_cannot_be_stored_is_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

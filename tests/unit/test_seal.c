/* test_seal: CRC-32 as zlib's, AES-256-GCM sealing that opens only with its key and associated data, key derivation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>

#include "seal.h"

static void crc32_matches_the_standard_check_value(void **state)
{
	assert_int_equal(psktun_crc32(0, "123456789", 9), 0xcbf43926u);
	/* in pieces as at once */
	assert_int_equal(psktun_crc32(psktun_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
	assert_int_equal(psktun_crc32(0, "", 0), 0);
}

static void sealed_opens_with_its_key_and_ad_only(void **state)
{
	uint8_t key[PSKTUN_SEAL_KEY_LEN], other[PSKTUN_SEAL_KEY_LEN];
	const char msg[] = "master secret and identity";
	uint8_t sealed[sizeof(msg) + PSKTUN_SEAL_OVERHEAD], sealed2[sizeof(sealed)], out[sizeof(msg)];

	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	assert_int_equal(psktun_seal(key, "ad", 2, msg, sizeof(msg), sealed), 0);
	assert_null(memmem(sealed, sizeof(sealed), "master", 6));
	assert_int_equal(psktun_unseal(key, "ad", 2, sealed, sizeof(sealed), out), 0);
	assert_memory_equal(out, msg, sizeof(msg));
	/* a random nonce: the same message seals differently */
	assert_int_equal(psktun_seal(key, "ad", 2, msg, sizeof(msg), sealed2), 0);
	assert_memory_not_equal(sealed, sealed2, sizeof(sealed));
	assert_int_equal(psktun_unseal(other, "ad", 2, sealed, sizeof(sealed), out), -EBADMSG);
	assert_int_equal(psktun_unseal(key, "AD", 2, sealed, sizeof(sealed), out), -EBADMSG);
	for (size_t i = 0; i < sizeof(sealed); i += 7) {
		sealed[i] ^= 0x01;
		assert_int_equal(psktun_unseal(key, "ad", 2, sealed, sizeof(sealed), out), -EBADMSG);
		sealed[i] ^= 0x01;
	}
	assert_int_equal(psktun_unseal(key, "ad", 2, sealed, PSKTUN_SEAL_OVERHEAD - 1, out), -EBADMSG);
}

static void derived_keys_differ_by_use_and_master(void **state)
{
	uint8_t m1[32], m2[32];
	struct psktun_seal_keys a, b, c;

	memset(m1, 1, sizeof(m1));
	memset(m2, 2, sizeof(m2));
	psktun_seal_keys_derive(m1, sizeof(m1), &a);
	psktun_seal_keys_derive(m1, sizeof(m1), &b);
	psktun_seal_keys_derive(m2, sizeof(m2), &c);
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_not_equal(a.seal, a.index, sizeof(a.seal));
	assert_memory_not_equal(a.seal, c.seal, sizeof(a.seal));
	assert_memory_not_equal(a.seal, m1, sizeof(a.seal));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32_matches_the_standard_check_value),
		cmocka_unit_test(sealed_opens_with_its_key_and_ad_only),
		cmocka_unit_test(derived_keys_differ_by_use_and_master),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

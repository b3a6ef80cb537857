/* test_record: the DTLS record framing check that runs before GnuTLS sees a datagram. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "record.h"

static size_t hdr(uint8_t *p, uint8_t type, uint8_t minor, uint16_t epoch, uint16_t length)
{
	memset(p, 0, DTLS_RECORD_HDR);
	p[0] = type;
	p[1] = 0xfe;
	p[2] = minor;
	p[3] = epoch >> 8;
	p[4] = epoch & 0xff;
	p[11] = length >> 8;
	p[12] = length & 0xff;
	return DTLS_RECORD_HDR;
}

static void test_a_whole_record_is_taken_and_the_next_begins_after_it(void **state)
{
	uint8_t d[64] = { 0 };

	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 20);
	hdr(d + 33, DTLS_CT_ALERT, 0xfd, 1, 18);
	assert_int_equal(dtls_record_len(d, 64), 33);
	assert_int_equal(dtls_record_len(d + 33, 31), 31);
	/* the first ClientHello and a HelloVerifyRequest may say DTLS 1.0 */
	hdr(d, DTLS_CT_HANDSHAKE, 0xff, 0, 20);
	assert_int_equal(dtls_record_len(d, 33), 33);
}

static void test_a_length_past_the_datagram_is_refused(void **state)
{
	uint8_t d[40] = { 0 };

	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 5000);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 28);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 27);
	assert_int_equal(dtls_record_len(d, sizeof(d)), 40);
}

static void test_a_short_header_an_empty_body_a_bad_type_or_version_is_refused(void **state)
{
	uint8_t d[40] = { 0 };

	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 1);
	assert_int_equal(dtls_record_len(d, 12), -EBADMSG);
	assert_int_equal(dtls_record_len(d, 0), -EBADMSG);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 0);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, 24 /* heartbeat */, 0xfd, 1, 20);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, 19, 0xfd, 1, 20);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfe, 1, 20);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, 20);
	d[1] = 0x03;	/* TLS */
	d[2] = 0x03;
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
}

static void test_a_body_longer_than_dtls_allows_is_refused(void **state)
{
	static uint8_t d[DTLS_RECORD_HDR + DTLS_RECORD_BODY_MAX + 1];

	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, DTLS_RECORD_BODY_MAX);
	assert_int_equal(dtls_record_len(d, sizeof(d)), DTLS_RECORD_HDR + DTLS_RECORD_BODY_MAX);
	hdr(d, DTLS_CT_APPLICATION_DATA, 0xfd, 1, DTLS_RECORD_BODY_MAX + 1);
	assert_int_equal(dtls_record_len(d, sizeof(d)), -EBADMSG);
}

static void test_a_plain_alert_is_an_epoch_0_alert_of_two_bytes(void **state)
{
	uint8_t d[15] = { 0 };

	hdr(d, DTLS_CT_ALERT, 0xfd, 0, 2);
	assert_true(dtls_is_plain_alert(d, 15));
	assert_false(dtls_is_plain_alert(d, 14));
	hdr(d, DTLS_CT_ALERT, 0xfd, 1, 2);
	assert_false(dtls_is_plain_alert(d, 15));
	hdr(d, DTLS_CT_ALERT, 0xfd, 0, 5000);
	assert_false(dtls_is_plain_alert(d, 15));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_whole_record_is_taken_and_the_next_begins_after_it),
		cmocka_unit_test(test_a_length_past_the_datagram_is_refused),
		cmocka_unit_test(test_a_short_header_an_empty_body_a_bad_type_or_version_is_refused),
		cmocka_unit_test(test_a_body_longer_than_dtls_allows_is_refused),
		cmocka_unit_test(test_a_plain_alert_is_an_epoch_0_alert_of_two_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

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
	hdr(d, DTLS_CT_HEARTBEAT, 0xfd, 1, 27);	/* the gateway's probe, RFC 6520 */
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
	hdr(d, 25, 0xfd, 1, 20);
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

static void test_the_lost_session_alert_is_a_fatal_unexpected_message_at_epoch_0(void **state)
{
	static const uint8_t want[DTLS_PLAIN_ALERT_LEN] = {
		DTLS_CT_ALERT, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 10
	};
	uint8_t d[DTLS_PLAIN_ALERT_LEN];

	memset(d, 0xaa, sizeof(d));
	dtls_plain_alert(d, DTLS_ALERT_UNEXPECTED_MESSAGE);
	assert_memory_equal(d, want, sizeof(want));
	assert_true(dtls_is_plain_alert(d, sizeof(d)));
	assert_int_equal(dtls_alert_description(d, sizeof(d)), 10);
	assert_int_equal(dtls_alert_description(d, DTLS_RECORD_HDR + 1), 0);	/* no description byte */
}

/* A ClientHello of `sid_len` session ID bytes (0x5a), fragment_length `frag`. */
static size_t hello(uint8_t *d, size_t cap, uint8_t sid_len, unsigned frag)
{
	size_t len = DTLS_CLIENT_HELLO_RANDOM + 32 + 1 + sid_len + 8;

	assert_true(len <= cap);
	memset(d, 0, len);
	hdr(d, DTLS_CT_HANDSHAKE, 0xfd, 0, len - DTLS_RECORD_HDR);
	d[DTLS_RECORD_HDR] = DTLS_HS_CLIENT_HELLO;
	d[DTLS_RECORD_HDR + 3] = (uint8_t)(len - DTLS_RECORD_HDR - DTLS_HS_HDR);	/* length */
	d[DTLS_RECORD_HDR + 11] = (uint8_t)frag;					/* fragment_length */
	d[DTLS_CLIENT_HELLO_RANDOM + 32] = sid_len;
	memset(d + DTLS_CLIENT_HELLO_RANDOM + 33, 0x5a, sid_len);
	return len;
}

static void test_a_client_hello_names_its_session_id_only_when_whole(void **state)
{
	uint8_t d[256];
	const uint8_t *sid;
	size_t len = hello(d, sizeof(d), 32, 0);

	d[DTLS_RECORD_HDR + 11] = d[DTLS_RECORD_HDR + 3];	/* one fragment: the whole message */
	assert_int_equal(dtls_client_hello_session_id(d, len, &sid), 32);
	assert_ptr_equal(sid, d + DTLS_CLIENT_HELLO_RANDOM + 33);
	assert_int_equal(sid[0], 0x5a);
	/* cut short: the ID runs past the datagram */
	assert_int_equal(dtls_client_hello_session_id(d, DTLS_CLIENT_HELLO_RANDOM + 33 + 31, &sid), 0);
	assert_null(sid);
	/* a fragment: cannot be read whole */
	d[DTLS_RECORD_HDR + 11]--;
	assert_int_equal(dtls_client_hello_session_id(d, len, &sid), 0);
	/* no session ID, or one longer than 32 */
	len = hello(d, sizeof(d), 0, 0);
	d[DTLS_RECORD_HDR + 11] = d[DTLS_RECORD_HDR + 3];
	assert_int_equal(dtls_client_hello_session_id(d, len, &sid), 0);
	len = hello(d, sizeof(d), 33, 0);
	d[DTLS_RECORD_HDR + 11] = d[DTLS_RECORD_HDR + 3];
	assert_int_equal(dtls_client_hello_session_id(d, len, &sid), 0);
}

/* version, random, session ID (2 bytes), suite, compression, extensions:
 * renegotiation_info (0xff01, 1 byte), heartbeat (15, 1 byte: `mode`) */
static size_t server_hello(uint8_t *sh, uint8_t mode)
{
	size_t i = 2 + 32;

	memset(sh, 0, 2 + 32 + 1 + 2 + 2 + 1 + 2 + 5 + 5);
	sh[0] = 0xfe;
	sh[1] = 0xfd;
	sh[i++] = 2;
	i += 2 + 2 + 1;
	sh[i++] = 0;
	sh[i++] = 10;
	memcpy(sh + i, "\xff\x01\x00\x01\x00\x00\x0f\x00\x01", 9);
	sh[i + 9] = mode;
	return i + 10;
}

static void test_a_server_hello_extension_is_found_only_whole(void **state)
{
	uint8_t sh[2 + 32 + 1 + 2 + 2 + 1 + 2 + 5 + 5];
	size_t len = server_hello(sh, 1);
	const uint8_t *body = NULL;

	assert_int_equal(len, sizeof(sh));
	assert_int_equal(dtls_server_hello_extension(sh, len, DTLS_EXT_HEARTBEAT, &body), 1);
	assert_ptr_equal(body, sh + len - 1);
	assert_int_equal(dtls_server_hello_extension(sh, len, 0xff01, &body), 1);
	assert_ptr_equal(body, sh + len - 6);
	assert_int_equal(dtls_server_hello_extension(sh, len, 23, &body), -1);
	assert_int_equal(dtls_server_hello_extension(sh, len - 1, DTLS_EXT_HEARTBEAT, &body), -1);	/* cut */
	assert_int_equal(dtls_server_hello_extension(sh, 2 + 32 + 1 + 2 + 2 + 1, DTLS_EXT_HEARTBEAT, &body), -1);
	assert_int_equal(dtls_server_hello_extension(sh, 20, DTLS_EXT_HEARTBEAT, &body), -1);
}

/* RFC 6520 2: "HeartbeatRequest messages MUST NOT be sent to a peer indicating
 * peer_not_allowed_to_send" (mode 2): only mode 1 lets the gateway probe. */
static void test_only_peer_allowed_to_send_lets_the_client_send_heartbeats(void **state)
{
	uint8_t sh[2 + 32 + 1 + 2 + 2 + 1 + 2 + 5 + 5];
	size_t len;

	len = server_hello(sh, 1);
	assert_true(dtls_server_hello_allows_heartbeats(sh, len));
	len = server_hello(sh, 2);
	assert_false(dtls_server_hello_allows_heartbeats(sh, len));
	len = server_hello(sh, 0);
	assert_false(dtls_server_hello_allows_heartbeats(sh, len));
	len = server_hello(sh, 1);
	assert_false(dtls_server_hello_allows_heartbeats(sh, len - 1));	/* cut */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_whole_record_is_taken_and_the_next_begins_after_it),
		cmocka_unit_test(test_a_length_past_the_datagram_is_refused),
		cmocka_unit_test(test_a_short_header_an_empty_body_a_bad_type_or_version_is_refused),
		cmocka_unit_test(test_a_server_hello_extension_is_found_only_whole),
		cmocka_unit_test(test_only_peer_allowed_to_send_lets_the_client_send_heartbeats),
		cmocka_unit_test(test_a_body_longer_than_dtls_allows_is_refused),
		cmocka_unit_test(test_a_plain_alert_is_an_epoch_0_alert_of_two_bytes),
		cmocka_unit_test(test_the_lost_session_alert_is_a_fatal_unexpected_message_at_epoch_0),
		cmocka_unit_test(test_a_client_hello_names_its_session_id_only_when_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

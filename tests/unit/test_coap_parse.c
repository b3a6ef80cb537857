/* Unit tests for the CoAP parser and serializer: RFC 7252 byte vectors and a corpus of malformed messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "parse.h"

#define PARSE(m, bytes) coap_parse((m), (bytes), sizeof(bytes))

/* Collect up to 16 options of a parsed message. */
struct opt_list {
	size_t n;
	struct coap_opt o[16];
};

static void collect(const struct coap_msg *m, struct opt_list *l)
{
	struct coap_opt_iter it;

	l->n = 0;
	coap_opt_iter_init(&it, m);
	while (l->n < 16 && coap_opt_next(&it, &l->o[l->n]))
		l->n++;
}

/* RFC 7252 figure 2: CON [0x7d34] GET /temperature, no token. */
static void test_con_get_with_uri_path_parses(void **state)
{
	static const uint8_t msg[] = {
		0x40, 0x01, 0x7d, 0x34,
		0xbb, 't', 'e', 'm', 'p', 'e', 'r', 'a', 't', 'u', 'r', 'e',
	};
	struct coap_msg m;
	struct opt_list l;

	assert_int_equal(PARSE(&m, msg), 0);
	assert_int_equal(m.type, COAP_CON);
	assert_int_equal(m.tkl, 0);
	assert_int_equal(m.code, COAP_CODE(0, 1));
	assert_int_equal(m.mid, 0x7d34);
	assert_true(coap_is_request(&m));
	assert_null(m.payload);
	assert_int_equal(m.payload_len, 0);
	collect(&m, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.o[0].number, COAP_OPT_URI_PATH);
	assert_int_equal(l.o[0].len, 11);
	assert_memory_equal(l.o[0].value, "temperature", 11);
}

/* RFC 7252 figure 4: ACK [0xbc90] 2.05 Content, token 0x71, "22.5 C". */
static void test_piggybacked_ack_with_token_and_payload_parses(void **state)
{
	static const uint8_t msg[] = {
		0x61, 0x45, 0xbc, 0x90, 0x71,
		0xff, '2', '2', '.', '5', ' ', 'C',
	};
	struct coap_msg m;
	struct opt_list l;

	assert_int_equal(PARSE(&m, msg), 0);
	assert_int_equal(m.type, COAP_ACK);
	assert_int_equal(m.tkl, 1);
	assert_int_equal(m.token[0], 0x71);
	assert_int_equal(m.code, COAP_CODE(2, 5));
	assert_int_equal(m.mid, 0xbc90);
	assert_false(coap_is_request(&m));
	assert_int_equal(m.opts_len, 0);
	assert_int_equal(m.payload_len, 6);
	assert_memory_equal(m.payload, "22.5 C", 6);
	collect(&m, &l);
	assert_int_equal(l.n, 0);
}

/* RFC 7252 figure 3 / 6: NON request, 8-byte token, 4.04 responses. */
static void test_non_with_8_byte_token_parses(void **state)
{
	static const uint8_t msg[] = {
		0x58, 0x84, 0x01, 0x23,
		1, 2, 3, 4, 5, 6, 7, 8,
	};
	struct coap_msg m;

	assert_int_equal(PARSE(&m, msg), 0);
	assert_int_equal(m.type, COAP_NON);
	assert_int_equal(m.tkl, 8);
	assert_int_equal(m.code, COAP_CODE(4, 4));
	assert_int_equal(m.mid, 0x0123);
	assert_memory_equal(m.token, ((const uint8_t[]){ 1, 2, 3, 4, 5, 6, 7, 8 }), 8);
	assert_int_equal(m.opts_len, 0);
	assert_null(m.payload);
}

/* Section 4.1 and 4.2: Empty CON (ping), Empty ACK, RST. */
static void test_empty_messages_parse(void **state)
{
	static const uint8_t ping[] = { 0x40, 0x00, 0x12, 0x34 };
	static const uint8_t ack[] = { 0x60, 0x00, 0xbc, 0x90 };
	static const uint8_t rst[] = { 0x70, 0x00, 0x7d, 0x36 };
	struct coap_msg m;

	assert_int_equal(PARSE(&m, ping), 0);
	assert_int_equal(m.type, COAP_CON);
	assert_true(coap_is_empty(&m));
	assert_false(coap_is_request(&m));
	assert_int_equal(m.mid, 0x1234);
	assert_int_equal(PARSE(&m, ack), 0);
	assert_int_equal(m.type, COAP_ACK);
	assert_int_equal(m.mid, 0xbc90);
	assert_int_equal(PARSE(&m, rst), 0);
	assert_int_equal(m.type, COAP_RST);
	assert_int_equal(m.mid, 0x7d36);
}

/* Section 3.1: delta and length nibbles 0..12 carry the value itself. */
static void test_option_delta_and_length_0_to_12_in_the_nibble(void **state)
{
	uint8_t msg[4 + 1 + 12];
	struct coap_msg m;
	struct opt_list l;

	for (unsigned d = 0; d <= 12; d++)
		for (unsigned len = 0; len <= 12; len++) {
			msg[0] = 0x40;
			msg[1] = 0x01;
			msg[2] = 0;
			msg[3] = 1;
			msg[4] = (uint8_t)((d << 4) | len);
			memset(msg + 5, 'v', len);
			assert_int_equal(coap_parse(&m, msg, 5 + len), 0);
			collect(&m, &l);
			assert_int_equal(l.n, 1);
			assert_int_equal(l.o[0].number, d);
			assert_int_equal(l.o[0].len, len);
			assert_ptr_equal(l.o[0].value, msg + 5);
		}
}

/* Nibble 13: one extended byte, value - 13. */
static void test_option_delta_13_takes_one_extra_byte(void **state)
{
	static const uint8_t lo[] = { 0x40, 0x01, 0, 1, 0xd0, 0x00 };
	static const uint8_t hi[] = { 0x40, 0x01, 0, 1, 0xd0, 0xff };
	struct coap_msg m;
	struct opt_list l;

	assert_int_equal(PARSE(&m, lo), 0);
	collect(&m, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.o[0].number, 13);
	assert_int_equal(l.o[0].len, 0);
	assert_int_equal(PARSE(&m, hi), 0);
	collect(&m, &l);
	assert_int_equal(l.o[0].number, 268);
}

/* Nibble 14: two extended bytes, network order, value - 269. */
static void test_option_delta_14_takes_two_extra_bytes(void **state)
{
	static const uint8_t lo[] = { 0x40, 0x01, 0, 1, 0xe0, 0x00, 0x00 };
	static const uint8_t max[] = { 0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf2 };
	struct coap_msg m;
	struct opt_list l;

	assert_int_equal(PARSE(&m, lo), 0);
	collect(&m, &l);
	assert_int_equal(l.o[0].number, 269);
	assert_int_equal(PARSE(&m, max), 0);
	collect(&m, &l);
	assert_int_equal(l.o[0].number, 65535);
}

static void test_option_length_13_and_14_extended(void **state)
{
	uint8_t msg[4 + 3 + 300];
	struct coap_msg m;
	struct opt_list l;

	memset(msg, 'x', sizeof(msg));
	msg[0] = 0x40;
	msg[1] = 0x01;
	msg[2] = 0;
	msg[3] = 1;
	/* Uri-Path, length 13 + 0x0c = 25 */
	msg[4] = 0xbd;
	msg[5] = 0x0c;
	assert_int_equal(coap_parse(&m, msg, 6 + 25), 0);
	collect(&m, &l);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.o[0].number, 11);
	assert_int_equal(l.o[0].len, 25);
	assert_ptr_equal(l.o[0].value, msg + 6);
	/* Uri-Path, length 269 + 0x001f = 300 */
	msg[4] = 0xbe;
	msg[5] = 0x00;
	msg[6] = 0x1f;
	assert_int_equal(coap_parse(&m, msg, 7 + 300), 0);
	collect(&m, &l);
	assert_int_equal(l.o[0].len, 300);
	assert_ptr_equal(l.o[0].value, msg + 7);
	/* One byte short of the declared length. */
	assert_int_equal(coap_parse(&m, msg, 7 + 299), -EBADMSG);
}

/* Extended delta bytes come before extended length bytes; deltas add up. */
static void test_options_accumulate_deltas_with_both_extended(void **state)
{
	static const uint8_t msg[] = {
		0x42, 0x02, 0xaa, 0xbb, 0xde, 0xad,
		0xb3, 'f', 'o', 'o',			/* 11 Uri-Path "foo" */
		0x03, 'b', 'a', 'r',			/* 11 Uri-Path "bar" */
		0x47, 'e', 'p', '=', 'm', 't', 'r', '1',/* 15 Uri-Query */
		0xdd, 0x00, 0x00,			/* 28, 13 bytes: */
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c',
		0xe1, 0x00, 0x01, 'z',			/* 28 + 270 = 298 */
		0xff, 0x01,
	};
	struct coap_msg m;
	struct opt_list l;

	assert_int_equal(PARSE(&m, msg), 0);
	assert_int_equal(m.code, COAP_CODE(0, 2));
	assert_int_equal(m.tkl, 2);
	collect(&m, &l);
	assert_int_equal(l.n, 5);
	assert_int_equal(l.o[0].number, 11);
	assert_memory_equal(l.o[0].value, "foo", 3);
	assert_int_equal(l.o[1].number, 11);
	assert_memory_equal(l.o[1].value, "bar", 3);
	assert_int_equal(l.o[2].number, 15);
	assert_int_equal(l.o[2].len, 7);
	assert_memory_equal(l.o[2].value, "ep=mtr1", 7);
	assert_int_equal(l.o[3].number, 28);
	assert_int_equal(l.o[3].len, 13);
	assert_int_equal(l.o[4].number, 298);
	assert_int_equal(l.o[4].len, 1);
	assert_int_equal(l.o[4].value[0], 'z');
	assert_int_equal(m.payload_len, 1);
	assert_int_equal(m.payload[0], 0x01);
	assert_ptr_equal(m.opts, msg + 6);
	assert_int_equal(m.opts_len, sizeof(msg) - 6 - 2);
}

static void test_payload_marker_right_after_token(void **state)
{
	static const uint8_t msg[] = { 0x51, 0x45, 0, 7, 0x99, 0xff, 'a', 'b' };
	struct coap_msg m;

	assert_int_equal(PARSE(&m, msg), 0);
	assert_int_equal(m.opts_len, 0);
	assert_ptr_equal(m.payload, msg + 6);
	assert_int_equal(m.payload_len, 2);
}

/* Every prefix of a valid message is malformed except those that end
 * exactly at the end of the token or of an option. */
static void test_truncation_at_every_length(void **state)
{
	static const uint8_t msg[] = {
		0x44, 0x01, 0x12, 0x34, 0xa1, 0xa2, 0xa3, 0xa4,	/* 8 */
		0xbd, 0x01, 'a', 'b', 'c', 'd', 'e', 'f', 'g',
		'h', 'i', 'j', 'k', 'l', 'm', 'n',		/* 24 */
		0xe2, 0x00, 0x10, 'q', 'q',			/* 29 */
		0xff, 'p', 'a', 'y',				/* 33 */
	};
	struct coap_msg m;

	for (size_t len = 0; len <= sizeof(msg); len++) {
		int want = (len == 8 || len == 24 || len == 29 ||
			    len >= 31) ? 0 : -EBADMSG;

		assert_int_equal(coap_parse(&m, msg, len), want);
	}
	assert_int_equal(coap_parse(&m, NULL, 0), -EBADMSG);
}

static void test_malformed_corpus(void **state)
{
	static const struct {
		const char *what;
		size_t len;
		uint8_t b[13];
	} corpus[] = {
		{ "version 0", 4, { 0x00, 0x01, 0, 1 } },
		{ "version 2", 4, { 0x80, 0x01, 0, 1 } },
		{ "version 3", 4, { 0xc0, 0x01, 0, 1 } },
		{ "tkl 9", 13, { 0x49, 0x01, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9 } },
		{ "tkl 15", 4, { 0x4f, 0x01, 0, 1 } },
		{ "token cut short", 6, { 0x43, 0x01, 0, 1, 1, 2 } },
		{ "delta 15, length 0", 5, { 0x40, 0x01, 0, 1, 0xf0 } },
		{ "delta 15, length 14", 8, { 0x40, 0x01, 0, 1, 0xfe, 0, 0, 0 } },
		{ "length 15", 5, { 0x40, 0x01, 0, 1, 0x0f } },
		{ "delta 11, length 15", 6, { 0x40, 0x01, 0, 1, 0xbf, 'x' } },
		{ "marker without payload", 5, { 0x40, 0x01, 0, 1, 0xff } },
		{ "marker without payload after option", 7,
		  { 0x40, 0x01, 0, 1, 0xb1, 'a', 0xff } },
		{ "extended delta byte missing", 5, { 0x40, 0x01, 0, 1, 0xd0 } },
		{ "extended delta 2nd byte missing", 6, { 0x40, 0x01, 0, 1, 0xe0, 0 } },
		{ "extended length byte missing", 6, { 0x40, 0x01, 0, 1, 0xdd, 0 } },
		{ "option value cut short", 7, { 0x40, 0x01, 0, 1, 0xb3, 'a', 'b' } },
		{ "option number past 65535", 7, { 0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf3 } },
		{ "option numbers add past 65535", 10,
		  { 0x40, 0x01, 0, 1, 0xe0, 0xfe, 0xf2, 0x10, 0, 0 } },
		{ "empty CON with token", 5, { 0x41, 0x00, 0, 1, 0x77 } },
		{ "empty ACK with token", 12, { 0x68, 0x00, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8 } },
		{ "empty CON with option", 5, { 0x40, 0x00, 0, 1, 0xb0 } },
		{ "empty CON with payload", 6, { 0x40, 0x00, 0, 1, 0xff, 1 } },
		{ "empty NON", 4, { 0x50, 0x00, 0, 1 } },
		{ "RST carrying a response", 4, { 0x70, 0x45, 0, 1 } },
		{ "RST carrying a request", 4, { 0x70, 0x01, 0, 1 } },
		{ "ACK carrying a request", 4, { 0x60, 0x01, 0, 1 } },
		{ "code class 1", 4, { 0x40, 0x20, 0, 1 } },
		{ "code class 6", 4, { 0x40, 0xc0, 0, 1 } },
		{ "code class 7 (TCP signalling)", 4, { 0x40, 0xe1, 0, 1 } },
		{ "3 bytes", 3, { 0x40, 0x01, 0 } },
	};
	struct coap_msg m;

	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		int rc = coap_parse(&m, corpus[i].b, corpus[i].len);

		if (rc != -EBADMSG)
			fail_msg("%s: got %d, want -EBADMSG", corpus[i].what, rc);
	}
}

static void test_opt_header_decodes_each_form(void **state)
{
	static const uint8_t small[] = { 0xc5 };
	static const uint8_t ext13[] = { 0xdd, 0x02, 0x03 };
	static const uint8_t ext14[] = { 0xee, 0x01, 0x00, 0x00, 0x02 };
	uint32_t d, l;

	assert_int_equal(coap_opt_header(small, 1, &d, &l), 1);
	assert_int_equal(d, 12);
	assert_int_equal(l, 5);
	assert_int_equal(coap_opt_header(ext13, 3, &d, &l), 3);
	assert_int_equal(d, 15);
	assert_int_equal(l, 16);
	assert_int_equal(coap_opt_header(ext14, 5, &d, &l), 5);
	assert_int_equal(d, 269 + 256);
	assert_int_equal(l, 271);
	assert_int_equal(coap_opt_header(ext14, 4, &d, &l), -EBADMSG);
	assert_int_equal(coap_opt_header((const uint8_t[]){ 0xff }, 1, &d, &l),
			 -EBADMSG);
	assert_int_equal(coap_opt_header(small, 0, &d, &l), -EBADMSG);
}

/* A piggybacked 4.03 written over the request keeps mid and token. */
static void test_write_header_over_request(void **state)
{
	uint8_t buf[32] = { 0x42, 0x02, 0xbe, 0xef, 0x11, 0x22, 0xb2, 'r', 'd' };
	static const uint8_t want[] = { 0x62, 0x83, 0xbe, 0xef, 0x11, 0x22 };

	assert_int_equal(coap_write_header(buf, sizeof(buf), COAP_ACK,
					   COAP_CODE_FORBIDDEN, 0xbeef, buf + 4, 2),
			 6);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(coap_write_header(buf, 5, COAP_ACK, 0, 1, buf + 4, 2),
			 -ENOBUFS);
	assert_int_equal(coap_write_header(buf, 32, COAP_ACK, 0, 1, buf, 9),
			 -EINVAL);
}

/* The serializer picks the shortest delta and length forms, and what it
 * writes parses back. */
static void test_write_option_shortest_forms_round_trip(void **state)
{
	static const uint8_t want[] = {
		0x40, 0x01, 0x00, 0x2a,
		0xbc, 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
		0x4d, 0x00, 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b',
		0xd0, 0x00,		/* 28: delta 13 */
		0xe0, 0x00, 0x00,	/* 297: delta 269 */
	};
	uint8_t buf[64], a[12], b[13];
	uint16_t prev = 0;
	size_t pos;
	struct coap_msg m;
	struct opt_list l;

	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	pos = (size_t)coap_write_header(buf, sizeof(buf), COAP_CON,
					COAP_CODE(0, 1), 42, NULL, 0);
	assert_int_equal(pos, 4);
	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 11, a, 12), 0);
	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 15, b, 13), 0);
	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 28, NULL, 0), 0);
	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 297, NULL, 0), 0);
	assert_int_equal(pos, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 11, NULL, 0),
			 -EINVAL);
	assert_int_equal(coap_write_option(buf, pos + 2, &pos, &prev, 300, a, 2),
			 -ENOBUFS);
	assert_int_equal(coap_parse(&m, buf, pos), 0);
	collect(&m, &l);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.o[3].number, 297);
}

static void test_write_option_length_14_form(void **state)
{
	static uint8_t value[300], buf[400];
	uint16_t prev = 0;
	size_t pos = 0;

	assert_int_equal(coap_write_option(buf, sizeof(buf), &pos, &prev, 1, value, 300), 0);
	assert_int_equal(pos, 3 + 300);
	assert_int_equal(buf[0], 0x1e);
	assert_int_equal(buf[1], 0x00);
	assert_int_equal(buf[2], 300 - 269);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_con_get_with_uri_path_parses),
		cmocka_unit_test(test_piggybacked_ack_with_token_and_payload_parses),
		cmocka_unit_test(test_non_with_8_byte_token_parses),
		cmocka_unit_test(test_empty_messages_parse),
		cmocka_unit_test(test_option_delta_and_length_0_to_12_in_the_nibble),
		cmocka_unit_test(test_option_delta_13_takes_one_extra_byte),
		cmocka_unit_test(test_option_delta_14_takes_two_extra_bytes),
		cmocka_unit_test(test_option_length_13_and_14_extended),
		cmocka_unit_test(test_options_accumulate_deltas_with_both_extended),
		cmocka_unit_test(test_payload_marker_right_after_token),
		cmocka_unit_test(test_truncation_at_every_length),
		cmocka_unit_test(test_malformed_corpus),
		cmocka_unit_test(test_opt_header_decodes_each_form),
		cmocka_unit_test(test_write_header_over_request),
		cmocka_unit_test(test_write_option_shortest_forms_round_trip),
		cmocka_unit_test(test_write_option_length_14_form),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

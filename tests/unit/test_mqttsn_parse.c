/* test_mqttsn_parse: MQTT-SN v1.2 parser and serializers against byte vectors built from the spec's formats. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mqttsn/parse.h"

#define VEC(...) ((const uint8_t[]){ __VA_ARGS__ })
#define VLEN(...) sizeof((const uint8_t[]){ __VA_ARGS__ })
/* Parse a literal vector; fails the test unless it parses. */
#define PARSE_OK(m, ...) \
	assert_int_equal(mqttsn_parse(VEC(__VA_ARGS__), VLEN(__VA_ARGS__), (m)), 0)

/* "meter-0001" */
#define METER1 0x6d, 0x65, 0x74, 0x65, 0x72, 0x2d, 0x30, 0x30, 0x30, 0x31

/* --- every message type, section 5.4 --- */

static void advertise_carries_gwid_and_duration(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x05, 0x00, 0x01, 0x03, 0x84);
	assert_int_equal(m.type, MQTTSN_ADVERTISE);
	assert_int_equal(m.len, 5);
	assert_int_equal(m.hdr_len, 2);
	assert_int_equal(m.gw_id, 1);
	assert_int_equal(m.duration, 900);
}

static void searchgw_carries_radius(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x03, 0x01, 0x02);
	assert_int_equal(m.type, MQTTSN_SEARCHGW);
	assert_int_equal(m.radius, 2);
}

static void gwinfo_from_gateway_has_no_address(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x03, 0x02, 0x07);
	assert_int_equal(m.type, MQTTSN_GWINFO);
	assert_int_equal(m.gw_id, 7);
	assert_int_equal(m.data_len, 0);
}

static void gwinfo_from_client_carries_gwadd(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x02, 0x01, 0xc0, 0xa8, 0x0a, 0x01);
	assert_int_equal(m.gw_id, 1);
	assert_int_equal(m.data_len, 4);
	assert_memory_equal(m.data, VEC(0xc0, 0xa8, 0x0a, 0x01), 4);
}

static void connect_carries_flags_keepalive_clientid(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x10, 0x04, 0x0c, 0x01, 0x00, 0x3c, METER1);
	assert_int_equal(m.type, MQTTSN_CONNECT);
	assert_true(m.has_flags);
	assert_int_equal(m.flags_raw, 0x0c);
	assert_true(m.flags.will);
	assert_true(m.flags.clean_session);
	assert_int_equal(m.protocol_id, 1);
	assert_int_equal(m.duration, 60);
	assert_int_equal(m.client_id_len, 10);
	assert_memory_equal(m.client_id, "meter-0001", 10);
}

static void connect_clientid_of_23_octets_is_accepted(void **state)
{
	uint8_t b[6 + 23] = { 6 + 23, 0x04, 0x04, 0x01, 0x00, 0x00 };
	struct mqttsn_msg m;

	memset(b + 6, 'x', 23);
	assert_int_equal(mqttsn_parse(b, sizeof(b), &m), 0);
	assert_int_equal(m.client_id_len, 23);
}

static void connack_carries_return_code(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x03, 0x05, 0x03);
	assert_int_equal(m.type, MQTTSN_CONNACK);
	assert_int_equal(m.return_code, MQTTSN_RC_NOT_SUPPORTED);
}

static void willtopicreq_and_willmsgreq_are_bare(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x02, 0x06);
	assert_int_equal(m.type, MQTTSN_WILLTOPICREQ);
	PARSE_OK(&m, 0x02, 0x08);
	assert_int_equal(m.type, MQTTSN_WILLMSGREQ);
}

static void willtopic_carries_flags_and_topic(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x07, 0x30, 'w', 'i', 'l', 'l');
	assert_int_equal(m.type, MQTTSN_WILLTOPIC);
	assert_int_equal(m.flags.qos, 1);
	assert_true(m.flags.retain);
	assert_int_equal(m.topic_len, 4);
	assert_memory_equal(m.topic, "will", 4);
}

static void empty_willtopic_deletes_will(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x02, 0x07);
	assert_int_equal(m.type, MQTTSN_WILLTOPIC);
	assert_false(m.has_flags);
	assert_int_equal(m.topic_len, 0);
}

static void willmsg_carries_message(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x05, 0x09, 'b', 'y', 'e');
	assert_int_equal(m.type, MQTTSN_WILLMSG);
	assert_int_equal(m.data_len, 3);
	assert_memory_equal(m.data, "bye", 3);
}

static void register_carries_topicid_msgid_name(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x01, 't', 'e', 'm', 'p');
	assert_int_equal(m.type, MQTTSN_REGISTER);
	assert_int_equal(m.topic_id, 0);
	assert_int_equal(m.msg_id, 1);
	assert_int_equal(m.topic_len, 4);
	assert_memory_equal(m.topic, "temp", 4);
}

static void regack_carries_topicid_msgid_rc(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x0b, 0x00, 0x05, 0x00, 0x01, 0x00);
	assert_int_equal(m.type, MQTTSN_REGACK);
	assert_int_equal(m.topic_id, 5);
	assert_int_equal(m.msg_id, 1);
	assert_int_equal(m.return_code, 0);
}

static void publish_carries_flags_topic_msgid_data(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x0b, 0x0c, 0xb0, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5');
	assert_int_equal(m.type, MQTTSN_PUBLISH);
	assert_true(m.flags.dup);
	assert_int_equal(m.flags.qos, 1);
	assert_true(m.flags.retain);
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_NORMAL);
	assert_int_equal(m.topic_id, 5);
	assert_int_equal(m.msg_id, 2);
	assert_int_equal(m.data_len, 4);
	assert_memory_equal(m.data, "21.5", 4);
}

static void publish_qos2_short_topic(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x08, 0x0c, 0x42, 'a', 'b', 0x12, 0x34, 'x');
	assert_int_equal(m.flags.qos, 2);
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_SHORT);
	assert_int_equal(m.topic_id, 0x6162);
	assert_int_equal(m.msg_id, 0x1234);
}

static void publish_qos_minus1_with_predefined_topic(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x0c, 0x61, 0x00, 0x07, 0x00, 0x00);
	assert_int_equal(m.flags.qos, -1);
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_PREDEFINED);
	assert_int_equal(m.topic_id, 7);
	assert_int_equal(m.data_len, 0);
}

static void puback_carries_topicid_msgid_rc(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x0d, 0x00, 0x05, 0x00, 0x02, 0x02);
	assert_int_equal(m.type, MQTTSN_PUBACK);
	assert_int_equal(m.topic_id, 5);
	assert_int_equal(m.msg_id, 2);
	assert_int_equal(m.return_code, MQTTSN_RC_INVALID_TOPIC_ID);
}

static void pubcomp_pubrec_pubrel_carry_msgid(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x04, 0x0e, 0x00, 0x03);
	assert_int_equal(m.type, MQTTSN_PUBCOMP);
	assert_int_equal(m.msg_id, 3);
	PARSE_OK(&m, 0x04, 0x0f, 0x01, 0x00);
	assert_int_equal(m.type, MQTTSN_PUBREC);
	assert_int_equal(m.msg_id, 256);
	PARSE_OK(&m, 0x04, 0x10, 0xff, 0xff);
	assert_int_equal(m.type, MQTTSN_PUBREL);
	assert_int_equal(m.msg_id, 0xffff);
}

static void subscribe_by_topic_name(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x08, 0x12, 0x20, 0x00, 0x04, 'a', '/', 'b');
	assert_int_equal(m.type, MQTTSN_SUBSCRIBE);
	assert_int_equal(m.flags.qos, 1);
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_NORMAL);
	assert_int_equal(m.msg_id, 4);
	assert_int_equal(m.topic_len, 3);
	assert_memory_equal(m.topic, "a/b", 3);
}

static void subscribe_by_predefined_and_short_topic(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x12, 0x01, 0x00, 0x04, 0x00, 0x07);
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_PREDEFINED);
	assert_int_equal(m.topic_id, 7);
	PARSE_OK(&m, 0x07, 0x12, 0x02, 0x00, 0x04, 'a', 'b');
	assert_int_equal(m.flags.topic_id_type, MQTTSN_TOPIC_SHORT);
	assert_int_equal(m.topic_id, 0x6162);
}

static void suback_carries_flags_topicid_msgid_rc(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00);
	assert_int_equal(m.type, MQTTSN_SUBACK);
	assert_int_equal(m.flags.qos, 1);
	assert_int_equal(m.topic_id, 5);
	assert_int_equal(m.msg_id, 4);
	assert_int_equal(m.return_code, 0);
}

static void unsubscribe_and_unsuback(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x08, 0x14, 0x00, 0x00, 0x06, 'a', '/', 'b');
	assert_int_equal(m.type, MQTTSN_UNSUBSCRIBE);
	assert_int_equal(m.msg_id, 6);
	assert_int_equal(m.topic_len, 3);
	PARSE_OK(&m, 0x04, 0x15, 0x00, 0x06);
	assert_int_equal(m.type, MQTTSN_UNSUBACK);
	assert_int_equal(m.msg_id, 6);
}

static void pingreq_with_and_without_clientid(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x02, 0x16);
	assert_int_equal(m.type, MQTTSN_PINGREQ);
	assert_null(m.client_id);
	PARSE_OK(&m, 0x0c, 0x16, METER1);
	assert_int_equal(m.client_id_len, 10);
	assert_memory_equal(m.client_id, "meter-0001", 10);
}

static void pingresp_is_bare(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x02, 0x17);
	assert_int_equal(m.type, MQTTSN_PINGRESP);
}

static void disconnect_with_and_without_duration(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x02, 0x18);
	assert_int_equal(m.type, MQTTSN_DISCONNECT);
	assert_false(m.has_duration);
	PARSE_OK(&m, 0x04, 0x18, 0x0e, 0x10);
	assert_true(m.has_duration);
	assert_int_equal(m.duration, 3600);
}

static void willtopicupd_and_willmsgupd(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x07, 0x1a, 0x50, 'w', 'i', 'l', 'l');
	assert_int_equal(m.type, MQTTSN_WILLTOPICUPD);
	assert_int_equal(m.flags.qos, 2);
	assert_true(m.flags.retain);
	assert_int_equal(m.topic_len, 4);
	PARSE_OK(&m, 0x02, 0x1a);
	assert_int_equal(m.topic_len, 0);
	PARSE_OK(&m, 0x05, 0x1c, 'b', 'y', 'e');
	assert_int_equal(m.type, MQTTSN_WILLMSGUPD);
	assert_int_equal(m.data_len, 3);
}

static void willtopicresp_and_willmsgresp(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x03, 0x1b, 0x00);
	assert_int_equal(m.type, MQTTSN_WILLTOPICRESP);
	assert_int_equal(m.return_code, 0);
	PARSE_OK(&m, 0x03, 0x1d, 0x01);
	assert_int_equal(m.type, MQTTSN_WILLMSGRESP);
	assert_int_equal(m.return_code, 1);
}

static void encapsulation_carries_ctrl_nodeid_inner(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x0d, 0xfe, 0x02, METER1, 0x02, 0x16);
	assert_int_equal(m.type, MQTTSN_ENCAPSULATED);
	assert_int_equal(m.len, 13);
	assert_int_equal(m.ctrl, 2);
	assert_int_equal(m.radius, 2);
	assert_int_equal(m.node_id_len, 10);
	assert_memory_equal(m.node_id, "meter-0001", 10);
	assert_int_equal(m.inner_len, 2);
	assert_memory_equal(m.inner, VEC(0x02, 0x16), 2);
}

/* --- lengths, section 5.2.1 --- */

static void three_octet_length_for_long_publish(void **state)
{
	uint8_t b[309] = { 0x01, 0x01, 0x35, 0x0c, 0x00, 0x00, 0x05, 0x00, 0x00 };
	struct mqttsn_msg m;

	memset(b + 9, 'p', 300);
	assert_int_equal(mqttsn_parse(b, sizeof(b), &m), 0);
	assert_int_equal(m.type, MQTTSN_PUBLISH);
	assert_int_equal(m.len, 309);
	assert_int_equal(m.hdr_len, 4);
	assert_int_equal(m.topic_id, 5);
	assert_int_equal(m.data_len, 300);
	assert_ptr_equal(m.data, b + 9);
}

static void three_octet_length_accepted_for_short_message(void **state)
{
	struct mqttsn_msg m;

	PARSE_OK(&m, 0x01, 0x00, 0x04, 0x17);
	assert_int_equal(m.type, MQTTSN_PINGRESP);
	assert_int_equal(m.hdr_len, 4);
	PARSE_OK(&m, 0x01, 0x00, 0x05, 0x05, 0x00);
	assert_int_equal(m.type, MQTTSN_CONNACK);
}

static void encapsulated_three_octet_message(void **state)
{
	uint8_t b[4 + 309] = { 0x04, 0xfe, 0x00, 'n', 0x01, 0x01, 0x35, 0x0c };
	struct mqttsn_msg m;

	assert_int_equal(mqttsn_parse(b, sizeof(b), &m), 0);
	assert_int_equal(m.type, MQTTSN_ENCAPSULATED);
	assert_int_equal(m.inner_len, 309);
}

/* --- flags, section 5.3.4 --- */

static void flags_decode_every_field(void **state)
{
	struct mqttsn_flags f;

	assert_int_equal(mqttsn_flags_decode(0xff & ~0x03, &f), 0);
	assert_true(f.dup);
	assert_int_equal(f.qos, -1);
	assert_true(f.retain);
	assert_true(f.will);
	assert_true(f.clean_session);
	assert_int_equal(f.topic_id_type, MQTTSN_TOPIC_NORMAL);
	assert_int_equal(mqttsn_flags_decode(0x00, &f), 0);
	assert_false(f.dup);
	assert_int_equal(f.qos, 0);
	assert_int_equal(mqttsn_flags_decode(0x20, &f), 0);
	assert_int_equal(f.qos, 1);
	assert_int_equal(mqttsn_flags_decode(0x40, &f), 0);
	assert_int_equal(f.qos, 2);
	assert_int_equal(mqttsn_flags_decode(0x01, &f), 0);
	assert_int_equal(f.topic_id_type, MQTTSN_TOPIC_PREDEFINED);
	assert_int_equal(mqttsn_flags_decode(0x02, &f), 0);
	assert_int_equal(f.topic_id_type, MQTTSN_TOPIC_SHORT);
	assert_int_equal(mqttsn_flags_decode(0x03, &f), -EBADMSG);
}

static void flags_encode_round_trips(void **state)
{
	struct mqttsn_flags f;

	for (unsigned raw = 0; raw < 256; raw++) {
		if ((raw & 3) == 3)
			continue;
		assert_int_equal(mqttsn_flags_decode((uint8_t)raw, &f), 0);
		assert_int_equal(mqttsn_flags_encode(&f), raw);
	}
}

/* --- malformed --- */

struct vec {
	const char *what;
	const uint8_t *b;
	size_t n;
};

#define V(what, ...) { what, VEC(__VA_ARGS__), VLEN(__VA_ARGS__) }

/* One valid vector of every type, 1- and 3-octet lengths, encapsulation. */
static const struct vec valid[] = {
	V("ADVERTISE", 0x05, 0x00, 0x01, 0x03, 0x84),
	V("SEARCHGW", 0x03, 0x01, 0x00),
	V("GWINFO", 0x03, 0x02, 0x01),
	V("GWINFO+addr", 0x07, 0x02, 0x01, 0xc0, 0xa8, 0x0a, 0x01),
	V("CONNECT", 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1),
	V("CONNACK", 0x03, 0x05, 0x00),
	V("WILLTOPICREQ", 0x02, 0x06),
	V("WILLTOPIC", 0x07, 0x07, 0x30, 'w', 'i', 'l', 'l'),
	V("WILLMSGREQ", 0x02, 0x08),
	V("WILLMSG", 0x05, 0x09, 'b', 'y', 'e'),
	V("REGISTER", 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x01, 't', 'e', 'm', 'p'),
	V("REGACK", 0x07, 0x0b, 0x00, 0x05, 0x00, 0x01, 0x00),
	V("PUBLISH", 0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5'),
	V("PUBACK", 0x07, 0x0d, 0x00, 0x05, 0x00, 0x02, 0x00),
	V("PUBCOMP", 0x04, 0x0e, 0x00, 0x03),
	V("PUBREC", 0x04, 0x0f, 0x00, 0x03),
	V("PUBREL", 0x04, 0x10, 0x00, 0x03),
	V("SUBSCRIBE", 0x08, 0x12, 0x20, 0x00, 0x04, 'a', '/', 'b'),
	V("SUBSCRIBE/pre", 0x07, 0x12, 0x01, 0x00, 0x04, 0x00, 0x07),
	V("SUBACK", 0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00),
	V("UNSUBSCRIBE", 0x08, 0x14, 0x00, 0x00, 0x06, 'a', '/', 'b'),
	V("UNSUBACK", 0x04, 0x15, 0x00, 0x06),
	V("PINGREQ", 0x02, 0x16),
	V("PINGREQ+id", 0x0c, 0x16, METER1),
	V("PINGRESP", 0x02, 0x17),
	V("DISCONNECT", 0x02, 0x18),
	V("DISCONNECT+d", 0x04, 0x18, 0x0e, 0x10),
	V("WILLTOPICUPD", 0x07, 0x1a, 0x30, 'w', 'i', 'l', 'l'),
	V("WILLTOPICRESP", 0x03, 0x1b, 0x00),
	V("WILLMSGUPD", 0x05, 0x1c, 'b', 'y', 'e'),
	V("WILLMSGRESP", 0x03, 0x1d, 0x00),
	V("3-octet CONNACK", 0x01, 0x00, 0x05, 0x05, 0x00),
	V("3-octet PUBLISH", 0x01, 0x00, 0x0b, 0x0c, 0x00, 0x00, 0x05, 0x00, 0x00, 'h', 'i'),
	V("ENCAPSULATED", 0x0d, 0xfe, 0x00, METER1, 0x03, 0x05, 0x00),
};

static void every_valid_vector_parses(void **state)
{
	struct mqttsn_msg m;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		print_message("%s\n", valid[i].what);
		assert_int_equal(mqttsn_parse(valid[i].b, valid[i].n, &m), 0);
	}
}

static void every_truncation_is_malformed(void **state)
{
	struct mqttsn_msg m;

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		for (size_t n = 0; n < valid[i].n; n++) {
			if (mqttsn_parse(valid[i].b, n, &m) != -EBADMSG)
				fail_msg("%s truncated to %zu parsed", valid[i].what, n);
		}
}

static void every_extension_is_malformed(void **state)
{
	uint8_t b[64];
	struct mqttsn_msg m;

	/* A trailing octet behind a message its Length does not count. */
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		memcpy(b, valid[i].b, valid[i].n);
		b[valid[i].n] = 0x00;
		if (mqttsn_parse(b, valid[i].n + 1, &m) != -EBADMSG)
			fail_msg("%s with a trailing octet parsed", valid[i].what);
	}
}

/* Length fields that agree with the datagram, but fields too short or
 * too long for the type; bad length fields; reserved values. */
static const struct vec malformed[] = {
	/* length field */
	V("length 0", 0x00, 0x16),
	V("length says more", 0x05, 0x17),
	V("length says less", 0x02, 0x17, 0x00),
	V("3-octet length 0", 0x01, 0x00, 0x00, 0x17),
	V("3-octet length 3", 0x01, 0x00, 0x03, 0x17),
	V("3-octet length says more", 0x01, 0x00, 0x05, 0x17),
	V("3-octet length says less", 0x01, 0x00, 0x04, 0x17, 0x00),
	V("3-octet header cut", 0x01, 0x00, 0x04),
	V("lone length", 0x02),
	/* reserved types */
	V("type 0x03", 0x02, 0x03),
	V("type 0x11", 0x02, 0x11),
	V("type 0x19", 0x02, 0x19),
	V("type 0x1e", 0x02, 0x1e),
	V("type 0xfd", 0x02, 0xfd),
	V("type 0xff", 0x02, 0xff),
	/* field lengths */
	V("ADVERTISE short", 0x04, 0x00, 0x01, 0x03),
	V("ADVERTISE long", 0x06, 0x00, 0x01, 0x03, 0x84, 0x00),
	V("SEARCHGW bare", 0x02, 0x01),
	V("SEARCHGW long", 0x04, 0x01, 0x00, 0x00),
	V("GWINFO bare", 0x02, 0x02),
	V("CONNECT no ClientId", 0x06, 0x04, 0x04, 0x01, 0x00, 0x3c),
	V("CONNECT no duration", 0x04, 0x04, 0x04, 0x01),
	V("CONNECT protocol 2", 0x07, 0x04, 0x04, 0x02, 0x00, 0x3c, 'a'),
	V("CONNECT protocol 0", 0x07, 0x04, 0x04, 0x00, 0x00, 0x3c, 'a'),
	V("CONNECT ClientId 24", 0x1e, 0x04, 0x04, 0x01, 0x00, 0x3c,
	  'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
	  'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'),
	V("CONNACK bare", 0x02, 0x05),
	V("CONNACK long", 0x04, 0x05, 0x00, 0x00),
	V("WILLTOPICREQ long", 0x03, 0x06, 0x00),
	V("WILLTOPIC flags only", 0x03, 0x07, 0x00),
	V("WILLMSGREQ long", 0x03, 0x08, 0x00),
	V("REGISTER no name", 0x06, 0x0a, 0x00, 0x00, 0x00, 0x01),
	V("REGISTER cut", 0x04, 0x0a, 0x00, 0x00),
	V("REGACK short", 0x06, 0x0b, 0x00, 0x05, 0x00, 0x01),
	V("REGACK long", 0x08, 0x0b, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00),
	V("PUBLISH no msgid", 0x05, 0x0c, 0x00, 0x00, 0x05),
	V("PUBLISH cut", 0x06, 0x0c, 0x00, 0x00, 0x05, 0x00),
	V("PUBACK short", 0x06, 0x0d, 0x00, 0x05, 0x00, 0x02),
	V("PUBCOMP short", 0x03, 0x0e, 0x00),
	V("PUBREC long", 0x05, 0x0f, 0x00, 0x03, 0x00),
	V("PUBREL bare", 0x02, 0x10),
	V("SUBSCRIBE no topic", 0x05, 0x12, 0x00, 0x00, 0x04),
	V("SUBSCRIBE predefined 1", 0x06, 0x12, 0x01, 0x00, 0x04, 0x07),
	V("SUBSCRIBE predefined 3", 0x08, 0x12, 0x01, 0x00, 0x04, 0x00, 0x07, 0x00),
	V("SUBSCRIBE short 3", 0x08, 0x12, 0x02, 0x00, 0x04, 'a', 'b', 'c'),
	V("SUBACK short", 0x07, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04),
	V("UNSUBSCRIBE no topic", 0x05, 0x14, 0x00, 0x00, 0x06),
	V("UNSUBSCRIBE short 1", 0x06, 0x14, 0x02, 0x00, 0x06, 'a'),
	V("UNSUBACK long", 0x05, 0x15, 0x00, 0x06, 0x00),
	V("PINGREQ ClientId 24", 0x1a, 0x16,
	  'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
	  'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'),
	V("PINGRESP long", 0x03, 0x17, 0x00),
	V("DISCONNECT 1", 0x03, 0x18, 0x00),
	V("DISCONNECT 3", 0x05, 0x18, 0x00, 0x00, 0x00),
	V("WILLTOPICUPD flags only", 0x03, 0x1a, 0x00),
	V("WILLTOPICRESP bare", 0x02, 0x1b),
	V("WILLMSGRESP long", 0x04, 0x1d, 0x00, 0x00),
	/* flags */
	V("PUBLISH topic type 3", 0x07, 0x0c, 0x03, 0x00, 0x05, 0x00, 0x00),
	V("PUBLISH QoS -1 normal topic", 0x07, 0x0c, 0x60, 0x00, 0x05, 0x00, 0x00),
	V("SUBSCRIBE topic type 3", 0x07, 0x12, 0x03, 0x00, 0x04, 0x00, 0x07),
	V("SUBSCRIBE QoS -1", 0x08, 0x12, 0x60, 0x00, 0x04, 'a', '/', 'b'),
	V("UNSUBSCRIBE topic type 3", 0x07, 0x14, 0x03, 0x00, 0x06, 0x00, 0x07),
	V("SUBACK QoS -1", 0x08, 0x13, 0x60, 0x00, 0x05, 0x00, 0x04, 0x00),
	V("WILLTOPIC QoS -1", 0x07, 0x07, 0x60, 'w', 'i', 'l', 'l'),
	V("WILLTOPICUPD QoS -1", 0x07, 0x1a, 0x60, 'w', 'i', 'l', 'l'),
	/* encapsulation */
	V("ENCAP header only", 0x04, 0xfe, 0x00, 'n'),
	V("ENCAP no node id", 0x03, 0xfe, 0x00, 0x02, 0x16),
	V("ENCAP length past end", 0x09, 0xfe, 0x00, 'n', 0x02, 0x16),
	V("ENCAP length 0", 0x00, 0xfe, 0x00, 'n', 0x02, 0x16),
	V("ENCAP bad inner", 0x04, 0xfe, 0x00, 'n', 0x03, 0x16),
	V("ENCAP inner cut", 0x04, 0xfe, 0x00, 'n', 0x03, 0x05),
	V("ENCAP nested", 0x04, 0xfe, 0x00, 'n', 0x04, 0xfe, 0x00, 'm', 0x02, 0x16),
	V("ENCAP 3-octet length", 0x01, 0x00, 0x06, 0xfe, 0x00, 'n'),
};

static void malformed_corpus_is_refused(void **state)
{
	struct mqttsn_msg m;

	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		if (mqttsn_parse(malformed[i].b, malformed[i].n, &m) != -EBADMSG)
			fail_msg("malformed \"%s\" parsed", malformed[i].what);
	}
}

static void zero_length_and_null_are_malformed(void **state)
{
	struct mqttsn_msg m;

	assert_int_equal(mqttsn_parse(VEC(0x02, 0x16), 0, &m), -EBADMSG);
	assert_int_equal(mqttsn_parse(NULL, 0, &m), -EBADMSG);
	assert_int_equal(mqttsn_parse(NULL, 2, &m), -EBADMSG);
}

static void oversize_datagram_is_malformed(void **state)
{
	static uint8_t b[70000];
	struct mqttsn_msg m;

	/* The largest a 3-octet length can say: valid. */
	b[0] = 0x01;
	b[1] = 0xff;
	b[2] = 0xff;
	b[3] = MQTTSN_PUBLISH;
	assert_int_equal(mqttsn_parse(b, 65535, &m), 0);
	assert_int_equal(m.data_len, 65535 - 9);
	/* One octet more cannot be described. */
	assert_int_equal(mqttsn_parse(b, 65536, &m), -EBADMSG);
	assert_int_equal(mqttsn_parse(b, sizeof(b), &m), -EBADMSG);
	/* A 1-octet length followed by more than it says. */
	b[0] = 0x02;
	b[1] = MQTTSN_PINGREQ;
	assert_int_equal(mqttsn_parse(b, 300, &m), -EBADMSG);
}

static void every_single_octet_corruption_is_safe(void **state)
{
	uint8_t b[64];
	struct mqttsn_msg m;

	/* No crash and no read past the end for any octet value anywhere;
	 * run under the sanitizers this is a small deterministic fuzz. */
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		for (size_t pos = 0; pos < valid[i].n; pos++)
			for (unsigned v = 0; v < 256; v++) {
				memcpy(b, valid[i].b, valid[i].n);
				b[pos] = (uint8_t)v;
				if (mqttsn_parse(b, valid[i].n, &m) == 0)
					assert_true(m.len <= valid[i].n);
			}
}

/* --- serializers --- */

static void write_connack_bytes(void **state)
{
	uint8_t b[8];

	assert_int_equal(mqttsn_write_connack(b, sizeof(b), MQTTSN_RC_NOT_SUPPORTED), 3);
	assert_memory_equal(b, VEC(0x03, 0x05, 0x03), 3);
	assert_int_equal(mqttsn_write_connack(b, 2, 0), -ENOSPC);
}

static void write_gwinfo_bytes(void **state)
{
	uint8_t b[16];

	assert_int_equal(mqttsn_write_gwinfo(b, sizeof(b), 1, NULL, 0), 3);
	assert_memory_equal(b, VEC(0x03, 0x02, 0x01), 3);
	assert_int_equal(mqttsn_write_gwinfo(b, sizeof(b), 9, VEC(0xc0, 0xa8, 0x0a, 0x01), 4), 7);
	assert_memory_equal(b, VEC(0x07, 0x02, 0x09, 0xc0, 0xa8, 0x0a, 0x01), 7);
	assert_int_equal(mqttsn_write_gwinfo(b, 2, 1, NULL, 0), -ENOSPC);
}

static void write_advertise_bytes(void **state)
{
	uint8_t b[8];

	assert_int_equal(mqttsn_write_advertise(b, sizeof(b), 1, 900), 5);
	assert_memory_equal(b, VEC(0x05, 0x00, 0x01, 0x03, 0x84), 5);
	assert_int_equal(mqttsn_write_advertise(b, 4, 1, 900), -ENOSPC);
}

static void write_disconnect_bytes(void **state)
{
	uint8_t b[2];

	assert_int_equal(mqttsn_write_disconnect(b, sizeof(b)), 2);
	assert_memory_equal(b, VEC(0x02, 0x18), 2);
}

static void write_header_picks_length_format(void **state)
{
	uint8_t b[400];
	struct mqttsn_msg m;

	assert_int_equal(mqttsn_write_header(b, sizeof(b), 253, MQTTSN_WILLMSG), 2);
	assert_memory_equal(b, VEC(0xff, 0x09), 2);
	assert_int_equal(mqttsn_write_header(b, sizeof(b), 254, MQTTSN_WILLMSG), 4);
	assert_memory_equal(b, VEC(0x01, 0x01, 0x02, 0x09), 4);
	memset(b + 4, 'w', 254);
	assert_int_equal(mqttsn_parse(b, 258, &m), 0);
	assert_int_equal(m.data_len, 254);
	assert_int_equal(mqttsn_write_header(b, 257, 254, MQTTSN_WILLMSG), -ENOSPC);
	assert_int_equal(mqttsn_write_header(b, sizeof(b), 65532, MQTTSN_WILLMSG), -EINVAL);
}

static void encap_wrap_round_trips(void **state)
{
	uint8_t b[64] = { 0x03, 0x05, 0x00 };
	struct mqttsn_msg m, inner;

	assert_int_equal(mqttsn_encap_wrap(b, 3, sizeof(b), 0, (const uint8_t *)"meter-0001", 10), 16);
	assert_memory_equal(b, VEC(0x0d, 0xfe, 0x00, METER1, 0x03, 0x05, 0x00), 16);
	assert_int_equal(mqttsn_parse(b, 16, &m), 0);
	assert_int_equal(m.type, MQTTSN_ENCAPSULATED);
	assert_memory_equal(m.node_id, "meter-0001", 10);
	assert_int_equal(mqttsn_parse(m.inner, m.inner_len, &inner), 0);
	assert_int_equal(inner.type, MQTTSN_CONNACK);
}

static void encap_wrap_checks_room_and_node_id(void **state)
{
	uint8_t b[300] = { 0x02, 0x16 };
	uint8_t id[253];

	memset(id, 'n', sizeof(id));
	assert_int_equal(mqttsn_encap_wrap(b, 2, 5, 0, id, 1), -ENOSPC);
	assert_int_equal(mqttsn_encap_wrap(b, 2, 6, 0, id, 1), 6);
	assert_int_equal(mqttsn_encap_wrap(b, 2, sizeof(b), 0, id, 0), -EINVAL);
	assert_int_equal(mqttsn_encap_wrap(b, 2, sizeof(b), 0, id, 253), -EINVAL);
	assert_int_equal(mqttsn_encap_wrap(b, 2, sizeof(b), 4, id, 1), -EINVAL);
	b[0] = 0x02;
	b[1] = 0x16;
	assert_int_equal(mqttsn_encap_wrap(b, 2, sizeof(b), 3, id, 252), 257);
	assert_int_equal(b[0], 255);
	assert_int_equal(b[2], 3);
	assert_memory_equal(b + 255, VEC(0x02, 0x16), 2);
}

static void type_names(void **state)
{
	assert_string_equal(mqttsn_type_name(MQTTSN_CONNECT), "CONNECT");
	assert_string_equal(mqttsn_type_name(MQTTSN_ENCAPSULATED), "ENCAPSULATED");
	assert_string_equal(mqttsn_type_name(0x03), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(advertise_carries_gwid_and_duration),
		cmocka_unit_test(searchgw_carries_radius),
		cmocka_unit_test(gwinfo_from_gateway_has_no_address),
		cmocka_unit_test(gwinfo_from_client_carries_gwadd),
		cmocka_unit_test(connect_carries_flags_keepalive_clientid),
		cmocka_unit_test(connect_clientid_of_23_octets_is_accepted),
		cmocka_unit_test(connack_carries_return_code),
		cmocka_unit_test(willtopicreq_and_willmsgreq_are_bare),
		cmocka_unit_test(willtopic_carries_flags_and_topic),
		cmocka_unit_test(empty_willtopic_deletes_will),
		cmocka_unit_test(willmsg_carries_message),
		cmocka_unit_test(register_carries_topicid_msgid_name),
		cmocka_unit_test(regack_carries_topicid_msgid_rc),
		cmocka_unit_test(publish_carries_flags_topic_msgid_data),
		cmocka_unit_test(publish_qos2_short_topic),
		cmocka_unit_test(publish_qos_minus1_with_predefined_topic),
		cmocka_unit_test(puback_carries_topicid_msgid_rc),
		cmocka_unit_test(pubcomp_pubrec_pubrel_carry_msgid),
		cmocka_unit_test(subscribe_by_topic_name),
		cmocka_unit_test(subscribe_by_predefined_and_short_topic),
		cmocka_unit_test(suback_carries_flags_topicid_msgid_rc),
		cmocka_unit_test(unsubscribe_and_unsuback),
		cmocka_unit_test(pingreq_with_and_without_clientid),
		cmocka_unit_test(pingresp_is_bare),
		cmocka_unit_test(disconnect_with_and_without_duration),
		cmocka_unit_test(willtopicupd_and_willmsgupd),
		cmocka_unit_test(willtopicresp_and_willmsgresp),
		cmocka_unit_test(encapsulation_carries_ctrl_nodeid_inner),
		cmocka_unit_test(three_octet_length_for_long_publish),
		cmocka_unit_test(three_octet_length_accepted_for_short_message),
		cmocka_unit_test(encapsulated_three_octet_message),
		cmocka_unit_test(flags_decode_every_field),
		cmocka_unit_test(flags_encode_round_trips),
		cmocka_unit_test(every_valid_vector_parses),
		cmocka_unit_test(every_truncation_is_malformed),
		cmocka_unit_test(every_extension_is_malformed),
		cmocka_unit_test(malformed_corpus_is_refused),
		cmocka_unit_test(zero_length_and_null_are_malformed),
		cmocka_unit_test(oversize_datagram_is_malformed),
		cmocka_unit_test(every_single_octet_corruption_is_safe),
		cmocka_unit_test(write_connack_bytes),
		cmocka_unit_test(write_gwinfo_bytes),
		cmocka_unit_test(write_advertise_bytes),
		cmocka_unit_test(write_disconnect_bytes),
		cmocka_unit_test(write_header_picks_length_format),
		cmocka_unit_test(encap_wrap_round_trips),
		cmocka_unit_test(encap_wrap_checks_room_and_node_id),
		cmocka_unit_test(type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* mqttsn parse: MQTT-SN v1.2 message parser and the serializers the plugin needs; no daemon dependency. */
#ifndef PSKTUN_MQTTSN_PARSE_H
#define PSKTUN_MQTTSN_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Message types, MQTT-SN v1.2 section 5.2.2 (table 3). */
enum mqttsn_type {
	MQTTSN_ADVERTISE = 0x00,
	MQTTSN_SEARCHGW = 0x01,
	MQTTSN_GWINFO = 0x02,
	MQTTSN_CONNECT = 0x04,
	MQTTSN_CONNACK = 0x05,
	MQTTSN_WILLTOPICREQ = 0x06,
	MQTTSN_WILLTOPIC = 0x07,
	MQTTSN_WILLMSGREQ = 0x08,
	MQTTSN_WILLMSG = 0x09,
	MQTTSN_REGISTER = 0x0a,
	MQTTSN_REGACK = 0x0b,
	MQTTSN_PUBLISH = 0x0c,
	MQTTSN_PUBACK = 0x0d,
	MQTTSN_PUBCOMP = 0x0e,
	MQTTSN_PUBREC = 0x0f,
	MQTTSN_PUBREL = 0x10,
	MQTTSN_SUBSCRIBE = 0x12,
	MQTTSN_SUBACK = 0x13,
	MQTTSN_UNSUBSCRIBE = 0x14,
	MQTTSN_UNSUBACK = 0x15,
	MQTTSN_PINGREQ = 0x16,
	MQTTSN_PINGRESP = 0x17,
	MQTTSN_DISCONNECT = 0x18,
	MQTTSN_WILLTOPICUPD = 0x1a,
	MQTTSN_WILLTOPICRESP = 0x1b,
	MQTTSN_WILLMSGUPD = 0x1c,
	MQTTSN_WILLMSGRESP = 0x1d,
	MQTTSN_ENCAPSULATED = 0xfe,
};

/* Flags octet, section 5.3.4. */
#define MQTTSN_FLAG_DUP		0x80
#define MQTTSN_FLAG_QOS_MASK	0x60
#define MQTTSN_FLAG_QOS_SHIFT	5
#define MQTTSN_FLAG_RETAIN	0x10
#define MQTTSN_FLAG_WILL	0x08
#define MQTTSN_FLAG_CLEAN	0x04
#define MQTTSN_FLAG_TIDTYPE	0x03

enum mqttsn_topic_id_type {
	MQTTSN_TOPIC_NORMAL = 0,	/* topic name (SUBSCRIBE) or registered topic id */
	MQTTSN_TOPIC_PREDEFINED = 1,
	MQTTSN_TOPIC_SHORT = 2,		/* two-character topic name */
};

/* Return codes, section 5.3.10. */
enum mqttsn_return_code {
	MQTTSN_RC_ACCEPTED = 0x00,
	MQTTSN_RC_CONGESTION = 0x01,
	MQTTSN_RC_INVALID_TOPIC_ID = 0x02,
	MQTTSN_RC_NOT_SUPPORTED = 0x03,
};

#define MQTTSN_PROTOCOL_ID	0x01
#define MQTTSN_CLIENTID_MAX	23	/* section 5.3.1: 1..23 characters */
#define MQTTSN_MSG_MAX		65535	/* the 3-octet length field's limit */
/* Forwarder Encapsulation has a one-octet Length covering Length, MsgType,
 * Ctrl and the Wireless Node Id: the node id is at most 255 - 3 octets. */
#define MQTTSN_NODEID_MAX	252
#define MQTTSN_ENCAP_RADIUS	0x03	/* Ctrl bits 0-1; the rest reserved */

/* The decoded flags octet. */
struct mqttsn_flags {
	bool dup;
	int qos;		/* 0, 1, 2 or -1 (0b11) */
	bool retain;
	bool will;
	bool clean_session;
	enum mqttsn_topic_id_type topic_id_type;	/* 0b11 is rejected */
};

/*
 * One parsed message. Pointers point into the parsed buffer (no copies, no
 * allocation): the message is valid as long as that buffer is. Fields a
 * message type does not carry are zero / NULL.
 */
struct mqttsn_msg {
	uint8_t type;		/* enum mqttsn_type */
	size_t len;		/* the Length field: the whole message
				 * (ENCAPSULATED: its own header only) */
	size_t hdr_len;		/* 2 (1-octet length) or 4 (3-octet length) */

	bool has_flags;
	uint8_t flags_raw;
	struct mqttsn_flags flags;

	uint8_t gw_id;		/* ADVERTISE, GWINFO */
	uint8_t radius;		/* SEARCHGW; ENCAPSULATED: Ctrl bits 0-1 */
	uint8_t protocol_id;	/* CONNECT */
	uint8_t return_code;	/* CONNACK, REGACK, PUBACK, SUBACK, WILL*RESP */

	bool has_duration;	/* DISCONNECT carries it optionally */
	uint16_t duration;	/* ADVERTISE, CONNECT (keep-alive), DISCONNECT */
	uint16_t topic_id;	/* REGISTER, REGACK, PUBLISH, PUBACK, SUBACK,
				 * SUBSCRIBE/UNSUBSCRIBE with predefined or
				 * short type (short: the two characters) */
	uint16_t msg_id;	/* REGISTER, REGACK, PUBLISH, PUBACK, PUBREC,
				 * PUBREL, PUBCOMP, SUBSCRIBE, SUBACK,
				 * UNSUBSCRIBE, UNSUBACK */

	const uint8_t *client_id;	/* CONNECT; PINGREQ (optional) */
	size_t client_id_len;
	const uint8_t *topic;	/* REGISTER name, SUBSCRIBE/UNSUBSCRIBE name
				 * or id octets, WILLTOPIC/WILLTOPICUPD */
	size_t topic_len;
	const uint8_t *data;	/* PUBLISH data, WILLMSG/WILLMSGUPD, GWINFO GwAdd */
	size_t data_len;

	/* ENCAPSULATED only; the inner message has been validated too. */
	uint8_t ctrl;
	const uint8_t *node_id;
	size_t node_id_len;
	const uint8_t *inner;
	size_t inner_len;
};

/* Parse one datagram. The Length field must equal len; every field is
 * checked against the format of its type. Returns 0, or -EBADMSG for
 * anything malformed, truncated, reserved or of unknown type (m is then
 * unspecified). */
int mqttsn_parse(const uint8_t *buf, size_t len, struct mqttsn_msg *m);

/* The flags octet, decoded / encoded; decode rejects TopicIdType 0b11
 * with -EBADMSG. */
int mqttsn_flags_decode(uint8_t raw, struct mqttsn_flags *f);
uint8_t mqttsn_flags_encode(const struct mqttsn_flags *f);

/* A printable name of a type ("CONNECT"), "?" if unknown. */
const char *mqttsn_type_name(uint8_t type);

/*
 * Serializers. Each writes one message into buf[0..cap) and returns its
 * length, or -ENOSPC if it does not fit, -EINVAL if a field is out of
 * range. A 1-octet length is used whenever the message fits in 255 octets.
 */
int mqttsn_write_header(uint8_t *buf, size_t cap, size_t body_len, uint8_t type);
int mqttsn_write_connack(uint8_t *buf, size_t cap, uint8_t return_code);
int mqttsn_write_gwinfo(uint8_t *buf, size_t cap, uint8_t gw_id,
			const uint8_t *gw_add, size_t gw_add_len);
int mqttsn_write_advertise(uint8_t *buf, size_t cap, uint8_t gw_id, uint16_t duration);
int mqttsn_write_disconnect(uint8_t *buf, size_t cap);

/* Wrap the message in buf[0..len) in place in a Forwarder Encapsulation
 * (section 5.5) with the given radius and Wireless Node Id (1..252 octets);
 * buf has room for cap octets. Returns the new length, -ENOSPC, -EINVAL. */
int mqttsn_encap_wrap(uint8_t *buf, size_t len, size_t cap, uint8_t radius,
		      const uint8_t *node_id, size_t node_id_len);

#endif

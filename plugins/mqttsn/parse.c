/* mqttsn parse: validate and decode MQTT-SN v1.2 datagrams, write the few messages the plugin sends. */
#include <errno.h>
#include <string.h>

#include "parse.h"

/*
 * Strictness, where the specification leaves room:
 * - The Length field must equal the datagram length, and a 3-octet length
 *   is accepted even for short messages (the spec only says it "should" be
 *   used from 256 octets on).
 * - Bits a message type does not use are ignored, as are Ctrl's reserved
 *   bits; reserved values in used bits are refused: TopicIdType 0b11,
 *   QoS -1 anywhere but PUBLISH, and a QoS -1 PUBLISH with a normal topic
 *   id (section 6.8 allows it only with predefined or short topics).
 * - CONNECT: ProtocolId must be 0x01 and the ClientId 1..23 octets
 *   (section 5.4.4); a PINGREQ's optional ClientId likewise.
 * - Return codes are not range-checked, so a peer's future code passes.
 * - Forwarder Encapsulation: one-octet Length, a Node Id of at least one
 *   octet, and a complete, valid inner message that is not itself
 *   encapsulated.
 */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void flags_fill(uint8_t raw, struct mqttsn_flags *f)
{
	unsigned qos = (raw & MQTTSN_FLAG_QOS_MASK) >> MQTTSN_FLAG_QOS_SHIFT;

	f->dup = raw & MQTTSN_FLAG_DUP;
	f->qos = qos == 3 ? -1 : (int)qos;
	f->retain = raw & MQTTSN_FLAG_RETAIN;
	f->will = raw & MQTTSN_FLAG_WILL;
	f->clean_session = raw & MQTTSN_FLAG_CLEAN;
	f->topic_id_type = (enum mqttsn_topic_id_type)(raw & MQTTSN_FLAG_TIDTYPE);
}

int mqttsn_flags_decode(uint8_t raw, struct mqttsn_flags *f)
{
	flags_fill(raw, f);
	if ((raw & MQTTSN_FLAG_TIDTYPE) == MQTTSN_FLAG_TIDTYPE)
		return -EBADMSG;
	return 0;
}

uint8_t mqttsn_flags_encode(const struct mqttsn_flags *f)
{
	unsigned qos = f->qos < 0 ? 3u : (unsigned)f->qos & 3u;

	return (uint8_t)((f->dup ? MQTTSN_FLAG_DUP : 0) |
			 qos << MQTTSN_FLAG_QOS_SHIFT |
			 (f->retain ? MQTTSN_FLAG_RETAIN : 0) |
			 (f->will ? MQTTSN_FLAG_WILL : 0) |
			 (f->clean_session ? MQTTSN_FLAG_CLEAN : 0) |
			 ((unsigned)f->topic_id_type & MQTTSN_FLAG_TIDTYPE));
}

const char *mqttsn_type_name(uint8_t type)
{
	switch (type) {
	case MQTTSN_ADVERTISE: return "ADVERTISE";
	case MQTTSN_SEARCHGW: return "SEARCHGW";
	case MQTTSN_GWINFO: return "GWINFO";
	case MQTTSN_CONNECT: return "CONNECT";
	case MQTTSN_CONNACK: return "CONNACK";
	case MQTTSN_WILLTOPICREQ: return "WILLTOPICREQ";
	case MQTTSN_WILLTOPIC: return "WILLTOPIC";
	case MQTTSN_WILLMSGREQ: return "WILLMSGREQ";
	case MQTTSN_WILLMSG: return "WILLMSG";
	case MQTTSN_REGISTER: return "REGISTER";
	case MQTTSN_REGACK: return "REGACK";
	case MQTTSN_PUBLISH: return "PUBLISH";
	case MQTTSN_PUBACK: return "PUBACK";
	case MQTTSN_PUBCOMP: return "PUBCOMP";
	case MQTTSN_PUBREC: return "PUBREC";
	case MQTTSN_PUBREL: return "PUBREL";
	case MQTTSN_SUBSCRIBE: return "SUBSCRIBE";
	case MQTTSN_SUBACK: return "SUBACK";
	case MQTTSN_UNSUBSCRIBE: return "UNSUBSCRIBE";
	case MQTTSN_UNSUBACK: return "UNSUBACK";
	case MQTTSN_PINGREQ: return "PINGREQ";
	case MQTTSN_PINGRESP: return "PINGRESP";
	case MQTTSN_DISCONNECT: return "DISCONNECT";
	case MQTTSN_WILLTOPICUPD: return "WILLTOPICUPD";
	case MQTTSN_WILLTOPICRESP: return "WILLTOPICRESP";
	case MQTTSN_WILLMSGUPD: return "WILLMSGUPD";
	case MQTTSN_WILLMSGRESP: return "WILLMSGRESP";
	case MQTTSN_ENCAPSULATED: return "ENCAPSULATED";
	default: return "?";
	}
}

/* Flags, then a Will topic of at least one octet; or nothing at all (the
 * "empty" WILLTOPIC / WILLTOPICUPD that deletes the Will, section 5.4.7). */
static int parse_willtopic(const uint8_t *p, size_t n, struct mqttsn_msg *m)
{
	if (n == 0)
		return 0;
	if (n < 2)
		return -EBADMSG;
	m->has_flags = true;
	m->flags_raw = p[0];
	flags_fill(p[0], &m->flags);
	if (m->flags.qos < 0)
		return -EBADMSG;
	m->topic = p + 1;
	m->topic_len = n - 1;
	return 0;
}

/* SUBSCRIBE and UNSUBSCRIBE: Flags, MsgId, then a topic name (normal) or
 * a two-octet topic id (predefined) or short topic name. */
static int parse_subscribe(const uint8_t *p, size_t n, struct mqttsn_msg *m)
{
	if (n < 4)
		return -EBADMSG;
	m->has_flags = true;
	m->flags_raw = p[0];
	if (mqttsn_flags_decode(p[0], &m->flags) < 0)
		return -EBADMSG;
	if (m->type == MQTTSN_SUBSCRIBE && m->flags.qos < 0)
		return -EBADMSG;
	m->msg_id = get16(p + 1);
	m->topic = p + 3;
	m->topic_len = n - 3;
	if (m->flags.topic_id_type != MQTTSN_TOPIC_NORMAL) {
		if (m->topic_len != 2)
			return -EBADMSG;
		m->topic_id = get16(m->topic);
	}
	return 0;
}

static int parse_encapsulated(const uint8_t *buf, size_t len, struct mqttsn_msg *m)
{
	struct mqttsn_msg inner;
	size_t hl = buf[0];

	if (hl < 4 || hl > len)
		return -EBADMSG;
	m->type = MQTTSN_ENCAPSULATED;
	m->len = hl;
	m->hdr_len = 2;
	m->ctrl = buf[2];
	m->radius = buf[2] & MQTTSN_ENCAP_RADIUS;
	m->node_id = buf + 3;
	m->node_id_len = hl - 3;
	m->inner = buf + hl;
	m->inner_len = len - hl;
	if (mqttsn_parse(m->inner, m->inner_len, &inner) < 0 ||
	    inner.type == MQTTSN_ENCAPSULATED)
		return -EBADMSG;
	return 0;
}

static int parse_body(const uint8_t *p, size_t n, struct mqttsn_msg *m)
{
	switch ((enum mqttsn_type)m->type) {
	case MQTTSN_ADVERTISE:
		if (n != 3)
			return -EBADMSG;
		m->gw_id = p[0];
		m->duration = get16(p + 1);
		return 0;
	case MQTTSN_SEARCHGW:
		if (n != 1)
			return -EBADMSG;
		m->radius = p[0];
		return 0;
	case MQTTSN_GWINFO:
		if (n < 1)
			return -EBADMSG;
		m->gw_id = p[0];
		m->data = p + 1;
		m->data_len = n - 1;
		return 0;
	case MQTTSN_CONNECT:
		if (n < 5 || n - 4 > MQTTSN_CLIENTID_MAX)
			return -EBADMSG;
		m->has_flags = true;
		m->flags_raw = p[0];
		flags_fill(p[0], &m->flags);
		m->protocol_id = p[1];
		if (m->protocol_id != MQTTSN_PROTOCOL_ID)
			return -EBADMSG;
		m->duration = get16(p + 2);
		m->client_id = p + 4;
		m->client_id_len = n - 4;
		return 0;
	case MQTTSN_CONNACK:
	case MQTTSN_WILLTOPICRESP:
	case MQTTSN_WILLMSGRESP:
		if (n != 1)
			return -EBADMSG;
		m->return_code = p[0];
		return 0;
	case MQTTSN_WILLTOPICREQ:
	case MQTTSN_WILLMSGREQ:
	case MQTTSN_PINGRESP:
		return n == 0 ? 0 : -EBADMSG;
	case MQTTSN_WILLTOPIC:
	case MQTTSN_WILLTOPICUPD:
		return parse_willtopic(p, n, m);
	case MQTTSN_WILLMSG:
	case MQTTSN_WILLMSGUPD:
		m->data = p;
		m->data_len = n;
		return 0;
	case MQTTSN_REGISTER:
		if (n < 5)
			return -EBADMSG;
		m->topic_id = get16(p);
		m->msg_id = get16(p + 2);
		m->topic = p + 4;
		m->topic_len = n - 4;
		return 0;
	case MQTTSN_REGACK:
	case MQTTSN_PUBACK:
		if (n != 5)
			return -EBADMSG;
		m->topic_id = get16(p);
		m->msg_id = get16(p + 2);
		m->return_code = p[4];
		return 0;
	case MQTTSN_PUBLISH:
		if (n < 5)
			return -EBADMSG;
		m->has_flags = true;
		m->flags_raw = p[0];
		if (mqttsn_flags_decode(p[0], &m->flags) < 0)
			return -EBADMSG;
		if (m->flags.qos < 0 &&
		    m->flags.topic_id_type == MQTTSN_TOPIC_NORMAL)
			return -EBADMSG;
		m->topic_id = get16(p + 1);
		m->msg_id = get16(p + 3);
		m->data = p + 5;
		m->data_len = n - 5;
		return 0;
	case MQTTSN_PUBCOMP:
	case MQTTSN_PUBREC:
	case MQTTSN_PUBREL:
	case MQTTSN_UNSUBACK:
		if (n != 2)
			return -EBADMSG;
		m->msg_id = get16(p);
		return 0;
	case MQTTSN_SUBSCRIBE:
	case MQTTSN_UNSUBSCRIBE:
		return parse_subscribe(p, n, m);
	case MQTTSN_SUBACK:
		if (n != 6)
			return -EBADMSG;
		m->has_flags = true;
		m->flags_raw = p[0];
		flags_fill(p[0], &m->flags);
		if (m->flags.qos < 0)
			return -EBADMSG;
		m->topic_id = get16(p + 1);
		m->msg_id = get16(p + 3);
		m->return_code = p[5];
		return 0;
	case MQTTSN_PINGREQ:
		if (n > MQTTSN_CLIENTID_MAX)
			return -EBADMSG;
		if (n > 0) {
			m->client_id = p;
			m->client_id_len = n;
		}
		return 0;
	case MQTTSN_DISCONNECT:
		if (n == 0)
			return 0;
		if (n != 2)
			return -EBADMSG;
		m->has_duration = true;
		m->duration = get16(p);
		return 0;
	case MQTTSN_ENCAPSULATED:	/* handled by the caller */
		return -EBADMSG;
	}
	return -EBADMSG;		/* reserved or unknown type */
}

int mqttsn_parse(const uint8_t *buf, size_t len, struct mqttsn_msg *m)
{
	size_t hdr_len, msg_len;

	memset(m, 0, sizeof(*m));
	if (!buf || len < 2)
		return -EBADMSG;
	/* Forwarder Encapsulation always has a one-octet Length that counts
	 * only its own header; 0x01 would announce a 3-octet length. */
	if (buf[0] != 0x01 && buf[1] == MQTTSN_ENCAPSULATED)
		return parse_encapsulated(buf, len, m);

	if (buf[0] == 0x01) {
		if (len < 4)
			return -EBADMSG;
		msg_len = get16(buf + 1);
		hdr_len = 4;
	} else {
		msg_len = buf[0];	/* 0x00 can never equal len >= 2 */
		hdr_len = 2;
	}
	if (msg_len != len)
		return -EBADMSG;
	m->type = buf[hdr_len - 1];
	m->len = msg_len;
	m->hdr_len = hdr_len;
	return parse_body(buf + hdr_len, len - hdr_len, m);
}

int mqttsn_write_header(uint8_t *buf, size_t cap, size_t body_len, uint8_t type)
{
	if (body_len + 2 <= 0xff) {
		if (cap < body_len + 2)
			return -ENOSPC;
		buf[0] = (uint8_t)(body_len + 2);
		buf[1] = type;
		return 2;
	}
	if (body_len > MQTTSN_MSG_MAX - 4)
		return -EINVAL;
	if (cap < body_len + 4)
		return -ENOSPC;
	buf[0] = 0x01;
	put16(buf + 1, (uint16_t)(body_len + 4));
	buf[3] = type;
	return 4;
}

int mqttsn_write_connack(uint8_t *buf, size_t cap, uint8_t return_code)
{
	int h = mqttsn_write_header(buf, cap, 1, MQTTSN_CONNACK);

	if (h < 0)
		return h;
	buf[h] = return_code;
	return h + 1;
}

int mqttsn_write_gwinfo(uint8_t *buf, size_t cap, uint8_t gw_id,
			const uint8_t *gw_add, size_t gw_add_len)
{
	int h;

	if (gw_add_len > 0 && !gw_add)
		return -EINVAL;
	h = mqttsn_write_header(buf, cap, 1 + gw_add_len, MQTTSN_GWINFO);
	if (h < 0)
		return h;
	buf[h] = gw_id;
	if (gw_add_len > 0)
		memcpy(buf + h + 1, gw_add, gw_add_len);
	return h + 1 + (int)gw_add_len;
}

int mqttsn_write_advertise(uint8_t *buf, size_t cap, uint8_t gw_id, uint16_t duration)
{
	int h = mqttsn_write_header(buf, cap, 3, MQTTSN_ADVERTISE);

	if (h < 0)
		return h;
	buf[h] = gw_id;
	put16(buf + h + 1, duration);
	return h + 3;
}

int mqttsn_write_disconnect(uint8_t *buf, size_t cap)
{
	return mqttsn_write_header(buf, cap, 0, MQTTSN_DISCONNECT);
}

int mqttsn_encap_wrap(uint8_t *buf, size_t len, size_t cap, uint8_t radius,
		      const uint8_t *node_id, size_t node_id_len)
{
	size_t hl = 3 + node_id_len;

	if (node_id_len < 1 || node_id_len > MQTTSN_NODEID_MAX ||
	    radius > MQTTSN_ENCAP_RADIUS || !node_id)
		return -EINVAL;
	if (len > cap || cap - len < hl)
		return -ENOSPC;
	memmove(buf + hl, buf, len);
	buf[0] = (uint8_t)hl;
	buf[1] = MQTTSN_ENCAPSULATED;
	buf[2] = radius;
	memcpy(buf + 3, node_id, node_id_len);
	return (int)(len + hl);
}

/* CoAP (RFC 7252) message parser and serializer: header, token, options, payload marker. */
#include <errno.h>
#include <string.h>

#include "parse.h"

/* Highest option number: the registry (RFC 7252, section 12.2) is 16 bits. */
#define COAP_OPT_NUMBER_MAX	65535u

/* Decode one 4-bit delta or length nibble with its extended bytes. */
static int ext_value(unsigned nibble, const uint8_t **p, const uint8_t *end,
		     uint32_t *out)
{
	switch (nibble) {
	case 13:
		if (end - *p < 1)
			return -EBADMSG;
		*out = 13u + (*p)[0];
		*p += 1;
		return 0;
	case 14:
		if (end - *p < 2)
			return -EBADMSG;
		*out = 269u + (((uint32_t)(*p)[0] << 8) | (*p)[1]);
		*p += 2;
		return 0;
	case 15:
		return -EBADMSG;
	default:
		*out = nibble;
		return 0;
	}
}

int coap_opt_header(const uint8_t *p, size_t avail, uint32_t *delta,
		    uint32_t *length)
{
	const uint8_t *start = p, *end = p + avail;

	if (avail < 1 || p[0] == COAP_PAYLOAD_MARKER)
		return -EBADMSG;
	p++;
	/* The extended delta bytes come before the extended length bytes. */
	if (ext_value(start[0] >> 4, &p, end, delta) < 0 ||
	    ext_value(start[0] & 0x0f, &p, end, length) < 0)
		return -EBADMSG;
	return (int)(p - start);
}

/* Walk the options from p up to the payload marker or the end. */
static int parse_options(struct coap_msg *m, const uint8_t *p,
			 const uint8_t *end)
{
	uint32_t number = 0, delta, length;
	int hlen;

	m->opts = p;
	while (p < end && p[0] != COAP_PAYLOAD_MARKER) {
		hlen = coap_opt_header(p, (size_t)(end - p), &delta, &length);
		if (hlen < 0)
			return -EBADMSG;
		p += hlen;
		if ((size_t)(end - p) < length)
			return -EBADMSG;
		number += delta;
		if (number > COAP_OPT_NUMBER_MAX)
			return -EBADMSG;
		p += length;
	}
	m->opts_len = (size_t)(p - m->opts);
	m->payload = NULL;
	m->payload_len = 0;
	if (p == end)
		return 0;
	/* A marker followed by a zero-length payload is a format error
	 * (section 3). */
	p++;
	if (p == end)
		return -EBADMSG;
	m->payload = p;
	m->payload_len = (size_t)(end - p);
	return 0;
}

/* Type and code combinations sections 4.1 to 4.3 rule out. */
static int check_type_code(const struct coap_msg *m, size_t len)
{
	switch (COAP_CODE_CLASS(m->code)) {
	case 0:
	case 2:
	case 4:
	case 5:
		break;
	default:
		/* 1, 6, 7 are reserved; 7.xx signalling is for the reliable
		 * transports only (RFC 8323). */
		return -EBADMSG;
	}
	if (coap_is_empty(m)) {
		/* Nothing, not even a token, after the message id. */
		if (m->tkl != 0 || len != COAP_HEADER_LEN)
			return -EBADMSG;
		/* A NON always carries a request or a response. */
		if (m->type == COAP_NON)
			return -EBADMSG;
		return 0;
	}
	if (m->type == COAP_RST)
		return -EBADMSG;
	if (m->type == COAP_ACK && coap_is_request(m))
		return -EBADMSG;
	return 0;
}

int coap_parse(struct coap_msg *m, const uint8_t *buf, size_t len)
{
	const uint8_t *p, *end;

	if (buf == NULL || len < COAP_HEADER_LEN)
		return -EBADMSG;
	if ((buf[0] >> 6) != COAP_VERSION)
		return -EBADMSG;
	m->type = (buf[0] >> 4) & 0x03;
	m->tkl = buf[0] & 0x0f;
	m->code = buf[1];
	m->mid = (uint16_t)((buf[2] << 8) | buf[3]);
	if (m->tkl > COAP_TOKEN_MAX)
		return -EBADMSG;
	if (check_type_code(m, len) < 0)
		return -EBADMSG;
	if (len - COAP_HEADER_LEN < m->tkl)
		return -EBADMSG;
	m->token = buf + COAP_HEADER_LEN;
	p = m->token + m->tkl;
	end = buf + len;
	return parse_options(m, p, end);
}

void coap_opt_iter_init(struct coap_opt_iter *it, const struct coap_msg *m)
{
	it->pos = m->opts;
	it->end = m->opts + m->opts_len;
	it->number = 0;
}

bool coap_opt_next(struct coap_opt_iter *it, struct coap_opt *o)
{
	uint32_t delta, length;
	int hlen;

	if (it->pos >= it->end)
		return false;
	hlen = coap_opt_header(it->pos, (size_t)(it->end - it->pos), &delta,
			       &length);
	if (hlen < 0 || (size_t)(it->end - it->pos) - (size_t)hlen < length ||
	    it->number + delta > COAP_OPT_NUMBER_MAX) {
		it->pos = it->end;
		return false;
	}
	it->number += delta;
	o->number = (uint16_t)it->number;
	o->len = (uint16_t)length;
	o->value = it->pos + hlen;
	it->pos += (size_t)hlen + length;
	return true;
}

int coap_write_header(uint8_t *buf, size_t cap, enum coap_type type,
		      uint8_t code, uint16_t mid, const uint8_t *token,
		      uint8_t tkl)
{
	if (tkl > COAP_TOKEN_MAX)
		return -EINVAL;
	if (cap < (size_t)COAP_HEADER_LEN + tkl)
		return -ENOBUFS;
	if (tkl > 0)
		memmove(buf + COAP_HEADER_LEN, token, tkl);
	buf[0] = (uint8_t)((COAP_VERSION << 6) | ((unsigned)type << 4) | tkl);
	buf[1] = code;
	buf[2] = (uint8_t)(mid >> 8);
	buf[3] = (uint8_t)mid;
	return COAP_HEADER_LEN + tkl;
}

/* The nibble and extended bytes for one delta or length value. */
static unsigned ext_encode(uint32_t v, uint8_t ext[static 2], size_t *n_ext)
{
	if (v < 13) {
		*n_ext = 0;
		return v;
	}
	if (v < 269) {
		ext[0] = (uint8_t)(v - 13);
		*n_ext = 1;
		return 13;
	}
	v -= 269;
	ext[0] = (uint8_t)(v >> 8);
	ext[1] = (uint8_t)v;
	*n_ext = 2;
	return 14;
}

int coap_write_option(uint8_t *buf, size_t cap, size_t *pos, uint16_t *prev,
		      uint16_t number, const uint8_t *value, uint16_t len)
{
	uint8_t dext[2], lext[2];
	size_t n_dext, n_lext, need;
	unsigned dn, ln;

	if (number < *prev)
		return -EINVAL;
	dn = ext_encode((uint32_t)number - *prev, dext, &n_dext);
	ln = ext_encode(len, lext, &n_lext);
	need = 1 + n_dext + n_lext + len;
	if (*pos > cap || cap - *pos < need)
		return -ENOBUFS;
	buf[*pos] = (uint8_t)((dn << 4) | ln);
	memcpy(buf + *pos + 1, dext, n_dext);
	memcpy(buf + *pos + 1 + n_dext, lext, n_lext);
	if (len > 0)
		memcpy(buf + *pos + 1 + n_dext + n_lext, value, len);
	*pos += need;
	*prev = number;
	return 0;
}

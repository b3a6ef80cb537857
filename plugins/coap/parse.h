/* CoAP (RFC 7252) message parser and serializer over caller-owned buffers: no allocation, no daemon dependency. */
#ifndef PSKTUN_COAP_PARSE_H
#define PSKTUN_COAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COAP_VERSION		1
#define COAP_HEADER_LEN		4
#define COAP_TOKEN_MAX		8
#define COAP_PAYLOAD_MARKER	0xff

enum coap_type {
	COAP_CON = 0,
	COAP_NON = 1,
	COAP_ACK = 2,
	COAP_RST = 3,
};

/* Code c.dd as one byte: class in the top 3 bits, detail in the low 5. */
#define COAP_CODE(c, dd)	((uint8_t)(((c) << 5) | (dd)))
#define COAP_CODE_CLASS(code)	((code) >> 5)
#define COAP_CODE_DETAIL(code)	((code) & 0x1f)
#define COAP_CODE_EMPTY		COAP_CODE(0, 0)
#define COAP_CODE_FORBIDDEN	COAP_CODE(4, 3)

/* Option numbers the plugin looks at (RFC 7252, section 12.2). */
#define COAP_OPT_URI_PATH	11
#define COAP_OPT_URI_QUERY	15
#define COAP_OPT_PROXY_URI	35
#define COAP_OPT_PROXY_SCHEME	39

/*
 * A parsed message. Every pointer points into the buffer given to
 * coap_parse() and is valid as long as that buffer is.
 */
struct coap_msg {
	uint8_t type;			/* enum coap_type */
	uint8_t tkl;			/* token length, 0..8 */
	uint8_t code;
	uint16_t mid;			/* message id, host order */
	const uint8_t *token;		/* tkl bytes */
	const uint8_t *opts;		/* the encoded options, opts_len bytes */
	size_t opts_len;
	const uint8_t *payload;		/* NULL when there is no payload marker */
	size_t payload_len;		/* >= 1 when payload != NULL */
};

/* One option as the iterator yields it. */
struct coap_opt {
	uint16_t number;		/* absolute option number */
	uint16_t len;
	const uint8_t *value;		/* len bytes, inside the message */
};

/* Walks the options of a message that coap_parse() accepted. */
struct coap_opt_iter {
	const uint8_t *pos;
	const uint8_t *end;
	uint32_t number;
};

/*
 * Parse and validate buf[0..len): version 1, TKL 0..8, a code of class 0,
 * 2, 4 or 5, options with extended deltas and lengths (nibble 15 is
 * reserved; option numbers past 65535 are rejected), a payload marker
 * followed by at least one byte, and the type/code rules of RFC 7252
 * sections 4.1-4.3 (an Empty message has TKL 0 and nothing after the
 * message id; RST is always Empty; NON is never Empty; an ACK does not
 * carry a request). Returns 0 and fills *m, or -EBADMSG.
 */
int coap_parse(struct coap_msg *m, const uint8_t *buf, size_t len);

/* Requests are class 0 with a non-zero detail. */
static inline bool coap_is_request(const struct coap_msg *m)
{
	return COAP_CODE_CLASS(m->code) == 0 && m->code != COAP_CODE_EMPTY;
}

static inline bool coap_is_empty(const struct coap_msg *m)
{
	return m->code == COAP_CODE_EMPTY;
}

void coap_opt_iter_init(struct coap_opt_iter *it, const struct coap_msg *m);

/* Yield the next option into *o: returns true, or false at the end. Only
 * for messages coap_parse() accepted (it stops, false, on anything else). */
bool coap_opt_next(struct coap_opt_iter *it, struct coap_opt *o);

/*
 * Decode one option header at p[0..avail): the delta and length (with
 * their extended bytes) and the header's size. Returns the header size
 * (1..5), or -EBADMSG for a reserved nibble or a truncated header. The
 * caller checks that `length` value bytes follow.
 */
int coap_opt_header(const uint8_t *p, size_t avail, uint32_t *delta,
		    uint32_t *length);

/*
 * Write a message header and token into buf[0..cap): returns the number
 * of bytes written (4 + tkl) or -ENOBUFS. `token` may overlap buf + 4
 * (memmove semantics), so a reply can be built over the request.
 */
int coap_write_header(uint8_t *buf, size_t cap, enum coap_type type,
		      uint8_t code, uint16_t mid, const uint8_t *token,
		      uint8_t tkl);

/*
 * Append one option (number >= *prev, the previous option's number, 0 for
 * the first) at buf[*pos..cap), choosing the shortest delta and length
 * forms. Returns 0 and advances *pos and *prev, or -ENOBUFS / -EINVAL.
 */
int coap_write_option(uint8_t *buf, size_t cap, size_t *pos, uint16_t *prev,
		      uint16_t number, const uint8_t *value, uint16_t len);

#endif

/* record: the DTLS record layer's wire format, checked before GnuTLS sees a byte. */
#include <errno.h>
#include <string.h>
#include "record.h"

int dtls_record_len(const uint8_t *p, size_t len)
{
	size_t body;

	if (len < DTLS_RECORD_HDR)
		return -EBADMSG;
	switch (p[0]) {
	case DTLS_CT_CCS:
	case DTLS_CT_ALERT:
	case DTLS_CT_HANDSHAKE:
	case DTLS_CT_APPLICATION_DATA:
	case DTLS_CT_HEARTBEAT:
		break;
	default:
		return -EBADMSG;
	}
	/* DTLS 1.2, or 1.0 in a first ClientHello and a HelloVerifyRequest (RFC 6347 4.2.1) */
	if (p[1] != 0xfe || (p[2] != 0xfd && p[2] != 0xff))
		return -EBADMSG;
	body = (size_t)p[11] << 8 | p[12];
	if (body == 0 || body > DTLS_RECORD_BODY_MAX || body > len - DTLS_RECORD_HDR)
		return -EBADMSG;
	return (int)(DTLS_RECORD_HDR + body);
}

/* record header, handshake header(12), client_version(2), random(32), session_id,
 * cookie, cipher_suites (one), compression_methods (one) */
#define CLIENT_HELLO_MIN (DTLS_RECORD_HDR + 12 + 2 + 32 + 1 + 1 + 2 + 2 + 1 + 1)

bool dtls_is_client_hello(const uint8_t *p, size_t len)
{
	return len >= CLIENT_HELLO_MIN && p[0] == DTLS_CT_HANDSHAKE && dtls_record_epoch(p) == 0 &&
	       p[DTLS_RECORD_HDR] == DTLS_HS_CLIENT_HELLO;
}

bool dtls_is_plain_alert(const uint8_t *p, size_t len)
{
	return dtls_record_len(p, len) == DTLS_RECORD_HDR + 2 && p[0] == DTLS_CT_ALERT &&
	       dtls_record_epoch(p) == 0;
}

void dtls_plain_alert(uint8_t out[static DTLS_PLAIN_ALERT_LEN], uint8_t description)
{
	memset(out, 0, DTLS_PLAIN_ALERT_LEN);
	out[0] = DTLS_CT_ALERT;
	out[1] = 0xfe;		/* DTLS 1.2 */
	out[2] = 0xfd;
	out[12] = 2;		/* length: level, description */
	out[DTLS_RECORD_HDR] = DTLS_ALERT_FATAL;
	out[DTLS_RECORD_HDR + 1] = description;
}

size_t dtls_client_hello_session_id(const uint8_t *p, size_t len, const uint8_t **sid)
{
	const uint8_t *hs = p + DTLS_RECORD_HDR;
	size_t off = DTLS_CLIENT_HELLO_RANDOM + 32, n;	/* then session_id's length */

	*sid = NULL;
	if (len < off + 1)
		return 0;
	n = p[off];
	if (n == 0 || n > 32 || len < off + 1 + n)
		return 0;
	/* fragment_offset 0 and fragment_length == length: the whole message */
	if (hs[6] || hs[7] || hs[8] || memcmp(hs + 1, hs + 9, 3))
		return 0;
	*sid = p + off + 1;
	return n;
}

unsigned dtls_handshake_message_seq(const uint8_t *p)
{
	const uint8_t *hs = p + DTLS_RECORD_HDR;

	return (unsigned)hs[4] << 8 | hs[5];
}

/* server_version(2) random(32) session_id(1+n) cipher_suite(2) compression_method(1)
 * [extensions(2) {type(2) length(2) data}...] (RFC 5246 7.4.1.3) */
ssize_t dtls_server_hello_extension(const uint8_t *p, size_t len, uint16_t type, const uint8_t **body)
{
	size_t i = 2 + 32, end, n;

	if (len < i + 1)
		return -1;
	i += 1 + p[i] + 2 + 1;
	if (len < i + 2)
		return -1;	/* no extensions */
	end = i + 2 + ((size_t)p[i] << 8 | p[i + 1]);
	if (end > len)
		return -1;
	for (i += 2; i + 4 <= end; i += 4 + n) {
		n = (size_t)p[i + 2] << 8 | p[i + 3];
		if (((uint16_t)p[i] << 8 | p[i + 1]) != type)
			continue;
		if (i + 4 + n > end)
			return -1;
		*body = p + i + 4;
		return (ssize_t)n;
	}
	return -1;
}

bool dtls_server_hello_allows_heartbeats(const uint8_t *p, size_t len)
{
	const uint8_t *mode;

	return dtls_server_hello_extension(p, len, DTLS_EXT_HEARTBEAT, &mode) == 1 &&
	       mode[0] == DTLS_HB_PEER_ALLOWED_TO_SEND;
}

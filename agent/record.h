/* record: the DTLS record layer's wire format, checked before GnuTLS sees a byte. */
#ifndef PSKTUN_RECORD_H
#define PSKTUN_RECORD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DTLS_RECORD_HDR 13	/* type(1) version(2) epoch(2) sequence(6) length(2) */
#define DTLS_RECORD_BODY_MAX (16384 + 2048)	/* RFC 6347 4.1 (RFC 5246 6.2.3) */
#define DTLS_RECORDS_MAX 16	/* records taken from one datagram; a flight has 3 to 5 */
/* AES-128-CCM-8: an 8-byte explicit nonce and an 8-byte tag; no DTLS 1.2 suite adds less. */
#define DTLS_OVERHEAD_MIN 16

#define DTLS_CT_CCS 20
#define DTLS_CT_ALERT 21
#define DTLS_CT_HANDSHAKE 22
#define DTLS_CT_APPLICATION_DATA 23
#define DTLS_CT_HEARTBEAT 24	/* RFC 6520: the gateway's dead-path probe (path_timeout_s) */
#define DTLS_HS_CLIENT_HELLO 1
#define DTLS_HS_HDR 12		/* type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3) */
/* Where a ClientHello record holds client_random: after both headers and client_version. */
#define DTLS_CLIENT_HELLO_RANDOM (DTLS_RECORD_HDR + DTLS_HS_HDR + 2)
#define DTLS_ALERT_FATAL 2
#define DTLS_ALERT_UNEXPECTED_MESSAGE 10
#define DTLS_PLAIN_ALERT_LEN (DTLS_RECORD_HDR + 2)	/* level(1) description(1) */

/*
 * The length (header and body) of the record at the start of p, or -EBADMSG
 * when what is there cannot be a record psktun's peers send: a header cut
 * short, a length field past the end of the datagram (GnuTLS would wait for
 * the rest and take the next datagrams for it), an empty body (no suite
 * psktun negotiates has one), a content type or version DTLS 1.2 does not use.
 */
int dtls_record_len(const uint8_t *p, size_t len);

static inline unsigned dtls_record_epoch(const uint8_t *p)
{
	return (unsigned)p[3] << 8 | p[4];
}

/* An unfragmented-looking epoch 0 ClientHello of at least the minimal size. */
bool dtls_is_client_hello(const uint8_t *p, size_t len);

/* An epoch 0 (plaintext, unauthenticated) alert record. */
bool dtls_is_plain_alert(const uint8_t *p, size_t len);

/* The description of the alert record at p (its length n, from dtls_record_len); 0 when it has none. */
static inline uint8_t dtls_alert_description(const uint8_t *p, size_t n)
{
	return n > DTLS_RECORD_HDR + 1 ? p[DTLS_RECORD_HDR + 1] : 0;
}

/* A fatal epoch 0 alert, record sequence 0, into out[DTLS_PLAIN_ALERT_LEN]. */
void dtls_plain_alert(uint8_t out[static DTLS_PLAIN_ALERT_LEN], uint8_t description);

/* The session ID a ClientHello record (dtls_is_client_hello) names, in *sid;
 * its length, or 0 when it names none or is fragmented (it cannot be read whole). */
size_t dtls_client_hello_session_id(const uint8_t *p, size_t len, const uint8_t **sid);
/* Extension `type` of a ServerHello's body (after the handshake header):
 * its length, its data in *body; -1 when it is not there whole. */
ssize_t dtls_server_hello_extension(const uint8_t *p, size_t len, uint16_t type, const uint8_t **body);
#define DTLS_EXT_HEARTBEAT 15	/* RFC 6520 */
#define DTLS_HB_PEER_ALLOWED_TO_SEND 1	/* its one byte: the client may send requests (2: must not) */
/* The ServerHello lets the client send heartbeat requests: the extension, mode 1. */
bool dtls_server_hello_allows_heartbeats(const uint8_t *p, size_t len);
/* A handshake record's message_seq (p holds at least a record and a handshake header). */
unsigned dtls_handshake_message_seq(const uint8_t *p);
#endif

/* dtls: GnuTLS for one session (push/pull over the session's sockets) and the daemon's DTLS state. */
#ifndef PSKTUN_DTLS_H
#define PSKTUN_DTLS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include <gnutls/dtls.h>
#include "config.h"
#include "diag.h"
#include "keys.h"
#include "resume.h"

struct daemon;
struct session;

int dtls_global_init(struct daemon *d, const struct psktun_config *cfg);
void dtls_global_deinit(struct daemon *d);
int dtls_set_priority(struct daemon *d, const struct psktun_conf_dtls *c);
int dtls_priority_new(const struct psktun_conf_dtls *c, gnutls_priority_t *out, struct psktun_diag *diag);
/* 64 bytes into out->data when it is set (out->size 64), else into a gnutls_malloc'd buffer. */
int dtls_ticket_key_load(const char *path, gnutls_datum_t *out, struct psktun_diag *diag);
int dtls_session_client(struct session *s, const struct psktun_key *key);
int dtls_session_server(struct session *s, gnutls_dtls_prestate_st *prestate);
void dtls_session_deinit(struct session *s);
/* One heartbeat request (RFC 6520) on an established session that negotiated them (s->heartbeat). */
int dtls_heartbeat_ping(struct session *s);
/* The session is the DTLS client (it began the handshake). */
bool dtls_is_client(const struct session *s);
void dtls_flight_begin(struct session *s);
void dtls_flight_end(struct session *s);
void dtls_key_digest(const struct psktun_key *key, uint8_t out[32]);
/* Gateway, a session up: whether it may probe (s->heartbeat), and what resumes the next one. */
void dtls_save_resumption(struct session *s);
size_t dtls_plain_max(const struct session *s);
void dtls_fake_key(struct daemon *d, const char *identity, size_t len, uint8_t *out, size_t out_len);

#endif

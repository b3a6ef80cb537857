/* gateway: the meters' side: plaintext from the LAN into each meter's DTLS session to the cloud. */
#ifndef PSKTUN_GATEWAY_H
#define PSKTUN_GATEWAY_H

struct psktun_config;
struct session;
struct tunnel;

/* The `meters` bindings again (reload); learned ones stay while their identity has a key. */
int gateway_bindings_load(struct tunnel *t, const struct psktun_config *cfg);
/* The session's own socket toward `connect` (a fresh one per handshake). */
int gateway_session_connect(struct session *s);
#endif

/* terminator: the cloud's side: DTLS-PSK sessions from many peers, each relayed to a plain UDP backend. */
#ifndef PSKTUN_TERMINATOR_H
#define PSKTUN_TERMINATOR_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct tunnel;

/* A ClientHello the shared cache held (cache.c) while it looked its session up: as if it came now. */
void terminator_client_hello(struct tunnel *t, const struct sockaddr *from, const uint8_t *data, size_t len);
#endif

/* addr: "host:port" / "[v6]:port" parsing, formatting and comparison of socket addresses. */
#ifndef PSKTUN_ADDR_H
#define PSKTUN_ADDR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PSKTUN_ADDRSTRLEN 64	/* "[v6]:port" with room to spare */

/* Split "host:port", "[v6]:port" (port required) into host and port text.
 * Returns 0, -EINVAL if malformed, -ENAMETOOLONG if it does not fit. */
int psktun_hostport_split(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/* Parse a numeric address: "1.2.3.4", "1.2.3.4:5", "::1", "[::1]:5".
 * With port_required, a missing port is -EINVAL. *has_port says whether one was given
 * (may be NULL). Port 0 is allowed only when port_required is false and none given. */
int psktun_addr_parse(const char *s, bool port_required, struct sockaddr_storage *out, bool *has_port);

/* "1.2.3.4:5" or "[::1]:5"; returns buf. */
const char *psktun_addr_format(const struct sockaddr *sa, char *buf, size_t len);

/* Same family and IP (and port, if with_port). IPv4-mapped IPv6 equals its IPv4. */
bool psktun_addr_equal(const struct sockaddr *a, const struct sockaddr *b, bool with_port);

/* A hash of IP (and port, if with_port), consistent with psktun_addr_equal. */
uint64_t psktun_addr_hash(const struct sockaddr *sa, bool with_port);

socklen_t psktun_addr_len(const struct sockaddr *sa);
#endif

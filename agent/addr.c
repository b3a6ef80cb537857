/* addr: numeric socket addresses: "host:port" parsing, formatting, equality and hashing. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

/* A port is 1..65535 in plain decimal: no sign, no spaces, no service names. */
static int port_parse(const char *s, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5)
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || v == 0 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

static int copy_part(char *dst, size_t dstlen, const char *s, size_t len)
{
	if (len >= dstlen)
		return -ENAMETOOLONG;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

int psktun_hostport_split(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *h, *p, *end;
	uint16_t dummy;
	int r;

	if (s[0] == '[') {
		h = s + 1;
		end = strchr(h, ']');
		if (!end || end == h || end[1] != ':' || memchr(h, '[', (size_t)(end - h)))
			return -EINVAL;
		p = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end || end == s || memchr(s, ':', (size_t)(end - s)))
			return -EINVAL;	/* no port, no host, or a bare IPv6 address */
		h = s;
		p = end + 1;
	}
	for (const char *c = h; c < end; c++)
		if (*c <= ' ' || *c == 0x7f || *c == '[' || *c == ']')
			return -EINVAL;
	if (port_parse(p, &dummy) < 0)
		return -EINVAL;
	r = copy_part(host, hostlen, h, (size_t)(end - h));
	if (r < 0)
		return r;
	return copy_part(port, portlen, p, strlen(p));
}

int psktun_addr_parse(const char *s, bool port_required, struct sockaddr_storage *out, bool *has_port)
{
	char host[INET6_ADDRSTRLEN + 1], port[8];
	const char *colon = strchr(s, ':');
	size_t len = strlen(s);
	uint16_t portnum = 0;
	bool with_port, v6;
	int r;

	if (s[0] == '[' && len >= 2 && s[len - 1] == ']') {
		/* "[v6]" without a port */
		if (copy_part(host, sizeof(host), s + 1, len - 2) < 0)
			return -EINVAL;
		with_port = false;
		v6 = true;
	} else if (s[0] == '[' || (colon && !strchr(colon + 1, ':'))) {
		/* "[v6]:port" or "v4:port" */
		r = psktun_hostport_split(s, host, sizeof(host), port, sizeof(port));
		if (r < 0 || port_parse(port, &portnum) < 0)
			return -EINVAL;
		with_port = true;
		v6 = s[0] == '[';
	} else {
		/* "v4" or a bare "v6" */
		if (copy_part(host, sizeof(host), s, len) < 0)
			return -EINVAL;
		with_port = false;
		v6 = colon != NULL;
	}
	if (port_required && !with_port)
		return -EINVAL;

	memset(out, 0, sizeof(*out));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(portnum);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(portnum);
	}
	if (has_port)
		*has_port = with_port;
	return 0;
}

const char *psktun_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
	return buf;
}

/* IP as 16 bytes (IPv4 as IPv4-mapped IPv6) and port, so both families compare alike. */
static bool normalize(const struct sockaddr *sa, uint8_t ip[16], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memset(ip, 0, 10);
		ip[10] = 0xff;
		ip[11] = 0xff;
		memcpy(ip + 12, &sin->sin_addr, 4);
		*port = sin->sin_port;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(ip, &sin6->sin6_addr, 16);
		*port = sin6->sin6_port;
		return true;
	}
	return false;
}

bool psktun_addr_equal(const struct sockaddr *a, const struct sockaddr *b, bool with_port)
{
	uint8_t ia[16], ib[16];
	uint16_t pa, pb;

	if (!normalize(a, ia, &pa) || !normalize(b, ib, &pb))
		return false;
	return memcmp(ia, ib, 16) == 0 && (!with_port || pa == pb);
}

/*
 * SipHash-2-4 with a per-process random key: the terminator keys its peer
 * table by addresses that anyone on the internet can choose, so a fixed
 * hash would let them pile every peer into one bucket.
 */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t load64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t siphash(const uint8_t key[static 16], const uint8_t *in, size_t len)
{
	uint64_t k0 = load64(key), k1 = load64(key + 8);
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
	uint64_t v3 = 0x7465646279746573ULL ^ k1;
	uint64_t b = (uint64_t)len << 56, m;
	size_t i, left = len & 7;

	for (i = 0; i + 8 <= len; i += 8) {
		m = load64(in + i);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t j = 0; j < left; j++)
		b |= (uint64_t)in[i + j] << (8 * j);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static uint8_t hash_key_bytes[16];
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;

static void hash_key_make(void)
{
	if (getrandom(hash_key_bytes, sizeof(hash_key_bytes), 0) != (ssize_t)sizeof(hash_key_bytes)) {
		/* No entropy yet: still a working hash, just a guessable one. */
		uint64_t mix[2] = { (uint64_t)(uintptr_t)hash_key_bytes, (uint64_t)time(NULL) ^ (uint64_t)getpid() };

		memcpy(hash_key_bytes, mix, sizeof(hash_key_bytes));
	}
}

/* Once for the process: workers share tables keyed by it (the session cache). */
static const uint8_t *hash_key(void)
{
	pthread_once(&hash_key_once, hash_key_make);
	return hash_key_bytes;
}

uint64_t psktun_addr_hash(const struct sockaddr *sa, bool with_port)
{
	uint8_t buf[18];
	uint16_t port;

	if (!normalize(sa, buf, &port))
		return 0;
	memcpy(buf + 16, &port, 2);
	return siphash(hash_key(), buf, with_port ? 18 : 16);
}

socklen_t psktun_addr_len(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}

/* hsslots: the terminator's handshake slots: fair shares per source, eviction, unproven addresses. */
#ifndef PSKTUN_HSSLOTS_H
#define PSKTUN_HSSLOTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "htab.h"

struct daemon;
struct session;
struct hs_source;

/*
 * What a terminator's handshaking session holds, embedded in the session.
 * A source is an IPv4 address or an IPv6 /64 (one host's share): every
 * source with a handshake in progress has one entry, so there are never
 * more entries than max_handshakes.
 */
struct hs_slot {
	struct hs_source *src;		/* NULL: holds no slot */
	struct session *older, *newer;	/* the source's handshakes, oldest first */
	bool progress;			/* GnuTLS has read the client's second flight */
	bool proven;			/* the peer showed it receives at its address:
					 * our cookie, or a finished handshake */
	uint32_t rx, tx;		/* bytes from / to the address while not proven */
	uint8_t random[32];		/* of the ClientHello that opened it without a cookie */
};

struct hs_sources {
	struct htab index;
	struct hs_source *all;		/* every entry, to find the largest */
	struct hs_source *top;		/* the largest when !top_stale */
	bool top_stale;
};

int hs_sources_init(struct hs_sources *hs);
void hs_sources_deinit(struct hs_sources *hs);

/* The source an address belongs to: 16 bytes (IPv4-mapped, or the IPv6 /64). */
void hs_source_key(const struct sockaddr *sa, uint8_t key[16]);

/* s (whose peer is set) starts a handshake: count it for its source. */
int hs_slot_take(struct daemon *d, struct session *s);
/* The handshake ended (done, failed, closed): free its slot. Idempotent. */
void hs_slot_release(struct daemon *d, struct session *s);

/*
 * All slots are taken and a new handshake from `from` passed the cookie
 * check. The source holding the most slots yields one, its oldest handshake
 * that has made no progress (or, when `from` holds fewer, its oldest): a
 * source may use what nobody else wants, never keep another out. Returns
 * that session, for the caller to close (terminator.c), or NULL.
 */
struct session *hs_slot_victim(struct daemon *d, const struct sockaddr *from);
/* How many slots the session's source holds. */
unsigned hs_slot_held(const struct session *s);

/* After a handshake step: note progress (the client's second flight). */
void hs_slot_step(struct session *s);
/* Milliseconds until a handshake without progress is given up (0: now);
 * UINT64_MAX when no such limit applies. */
uint64_t hs_slot_hello_left_ms(struct session *s);

/* Bytes the peer of an unproven session sent us; may `len` more go to it (3x rule)? */
void hs_slot_rx(struct session *s, size_t len);
bool hs_slot_may_send(struct session *s, size_t len);
#endif

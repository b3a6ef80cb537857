/* hsslots: the terminator's handshake slots: fair shares per source, eviction, unproven addresses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include "daemon.h"
#include "session.h"
#include "tunnel.h"
#include "hsslots.h"
#include "log.h"

struct hs_source {
	struct htab_node node;
	struct hs_source *prev, *next;	/* hs_sources.all */
	uint8_t key[16];
	unsigned n;			/* handshakes in progress */
	struct session *oldest, *newest;
};

/*
 * RFC 9147 section 4.1 and RFC 6347 4.2.1: until a peer has shown that it
 * receives at its address, send it at most three times what it sent.
 */
#define AMPLIFICATION_MAX 3

int hs_sources_init(struct hs_sources *hs)
{
	memset(hs, 0, sizeof(*hs));
	return htab_init(&hs->index, 64);
}

void hs_sources_deinit(struct hs_sources *hs)
{
	while (hs->all) {
		struct hs_source *src = hs->all;

		hs->all = src->next;
		free(src);
	}
	htab_deinit(&hs->index);
	memset(hs, 0, sizeof(*hs));
}

/* One host: an IPv4 address, or an IPv6 /64 (a host gets at least that many addresses). */
void hs_source_key(const struct sockaddr *sa, uint8_t key[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(key, mapped, sizeof(mapped));
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		memcpy(key, a, memcmp(a, mapped, sizeof(mapped)) ? 8 : 16);
	}
}

static struct hs_source *source_find(struct hs_sources *hs, const uint8_t key[16], uint64_t h)
{
	for (struct htab_node *n = htab_first(&hs->index, h); n; n = htab_next(n, h)) {
		struct hs_source *src = container_of(n, struct hs_source, node);

		if (!memcmp(src->key, key, 16))
			return src;
	}
	return NULL;
}

static struct hs_source *source_of(struct hs_sources *hs, const struct sockaddr *sa)
{
	uint8_t key[16];

	hs_source_key(sa, key);
	return source_find(hs, key, psktun_hash(key, sizeof(key)));
}

/* The source holding the most slots; found again only after the last one shrank. */
static struct hs_source *top_get(struct hs_sources *hs)
{
	if (hs->top_stale) {
		hs->top = NULL;
		for (struct hs_source *src = hs->all; src; src = src->next)
			if (!hs->top || src->n > hs->top->n)
				hs->top = src;
		hs->top_stale = false;
	}
	return hs->top;
}

int hs_slot_take(struct daemon *d, struct session *s)
{
	struct hs_sources *hs = &d->hs_sources;
	struct hs_slot *slot = &s->slot;
	struct hs_source *src;
	uint8_t key[16];
	uint64_t h;

	if (slot->src)
		return 0;
	hs_source_key((struct sockaddr *)&s->peer, key);
	h = psktun_hash(key, sizeof(key));
	src = source_find(hs, key, h);
	if (!src) {
		src = calloc(1, sizeof(*src));
		if (!src)
			return -ENOMEM;
		memcpy(src->key, key, sizeof(key));
		htab_insert(&hs->index, &src->node, h);
		src->next = hs->all;
		if (hs->all)
			hs->all->prev = src;
		hs->all = src;
	}
	slot->src = src;
	slot->older = src->newest;
	slot->newer = NULL;
	if (src->newest)
		src->newest->slot.newer = s;
	else
		src->oldest = s;
	src->newest = s;
	src->n++;
	if (!hs->top_stale && (!hs->top || src->n > hs->top->n))
		hs->top = src;
	return 0;
}

void hs_slot_release(struct daemon *d, struct session *s)
{
	struct hs_sources *hs = &d->hs_sources;
	struct hs_slot *slot = &s->slot;
	struct hs_source *src = slot->src;

	if (!src)
		return;
	if (slot->older)
		slot->older->slot.newer = slot->newer;
	else
		src->oldest = slot->newer;
	if (slot->newer)
		slot->newer->slot.older = slot->older;
	else
		src->newest = slot->older;
	slot->older = slot->newer = NULL;
	slot->src = NULL;
	src->n--;
	if (src == hs->top)
		hs->top_stale = true;
	if (src->n)
		return;
	htab_remove(&hs->index, &src->node);
	if (src->prev)
		src->prev->next = src->next;
	else
		hs->all = src->next;
	if (src->next)
		src->next->prev = src->prev;
	if (hs->top == src)
		hs->top = NULL;
	hs->top_stale = hs->all != NULL;
	free(src);
}

static struct session *oldest_without_progress(struct hs_source *src)
{
	for (struct session *s = src->oldest; s; s = s->slot.newer)
		if (!s->slot.progress)
			return s;
	return NULL;
}

struct session *hs_slot_victim(struct daemon *d, const struct sockaddr *from)
{
	struct hs_sources *hs = &d->hs_sources;
	struct hs_source *mine = source_of(hs, from), *top = top_get(hs);
	unsigned have = mine ? mine->n : 0;
	struct session *victim = NULL;

	if (!top)
		return NULL;
	if (have < top->n) {
		/* `from` holds fewer than the largest holder: that one yields. */
		victim = oldest_without_progress(top);
		if (!victim)
			victim = top->oldest;
	} else if (mine) {
		/* `from` is a largest holder itself (a carrier NAT, or the
		 * flood): its newest replaces its oldest that is going nowhere,
		 * never one that is about to finish. */
		victim = oldest_without_progress(mine);
	}
	return victim;
}

unsigned hs_slot_held(const struct session *s)
{
	return s->slot.src ? s->slot.src->n : 0;
}

void hs_slot_step(struct session *s)
{
	gnutls_handshake_description_t in;

	if (!s->slot.src || s->slot.progress || !s->tls)
		return;
	in = gnutls_handshake_get_last_in(s->tls);
	if (in == GNUTLS_HANDSHAKE_CLIENT_KEY_EXCHANGE || in == GNUTLS_HANDSHAKE_CERTIFICATE_VERIFY ||
	    in == GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC || in == GNUTLS_HANDSHAKE_FINISHED)
		s->slot.progress = true;
}

/*
 * While slots run short (half or more in use), a peer that has not answered
 * our first flight with its second after three retransmission intervals
 * (27 s by default: our flight and its first retransmission have each had
 * an NB-IoT round trip and more) is most likely not coming: its slot is
 * worth more to the next meter than the rest of handshake_timeout_s.
 * So is one begun without a cookie at an address that has not shown it
 * receives there (a forged resumption hello, most likely): the 3x rule
 * already silences it. Otherwise, without that pressure, a handshake keeps
 * its whole handshake_timeout_s: on a lossy link a real client's second
 * flight can be lost several times, and once we have given up, its resent
 * second flight finds no handshake and it waits out its own timeout before
 * it starts again.
 */
uint64_t hs_slot_hello_left_ms(struct session *s)
{
	const struct psktun_conf_dtls *c;
	uint64_t limit, elapsed;

	if (!s->slot.src || s->slot.progress)
		return UINT64_MAX;
	c = &s->t->d->cfg->dtls;
	if (s->slot.proven && 2 * (uint64_t)s->t->d->n_handshaking < c->max_handshakes)
		return UINT64_MAX;
	limit = 3 * (uint64_t)c->retransmit_ms;
	if (limit > (uint64_t)c->handshake_timeout_s * 1000)
		limit = (uint64_t)c->handshake_timeout_s * 1000;
	elapsed = daemon_now_ms(s->t->d) - s->started_ms;
	return elapsed >= limit ? 0 : limit - elapsed;
}

void hs_slot_rx(struct session *s, size_t len)
{
	if (s->slot.proven)
		return;
	s->slot.rx = len > UINT32_MAX - s->slot.rx ? UINT32_MAX : s->slot.rx + (uint32_t)len;
}

bool hs_slot_may_send(struct session *s, size_t len)
{
	if (s->slot.proven)
		return true;
	if ((uint64_t)s->slot.tx + len > (uint64_t)AMPLIFICATION_MAX * s->slot.rx)
		return false;
	s->slot.tx += (uint32_t)len;
	return true;
}

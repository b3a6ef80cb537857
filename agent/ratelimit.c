/* ratelimit: per-source token buckets in a fixed table, so a flood cannot grow memory. */
#include <string.h>
#include "addr.h"
#include "ratelimit.h"

void ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst)
{
	memset(rl, 0, sizeof(*rl));
	rl->rate = rate;
	rl->burst = burst ? burst : 1;
}

bool ratelimit_take(struct ratelimit *rl, const struct sockaddr *from, uint64_t now_ms)
{
	uint64_t h = psktun_addr_hash(from, false);
	uint64_t full = (uint64_t)rl->burst * 1000, tokens;
	typeof(rl->slot[0]) *b = &rl->slot[h % RATELIMIT_SLOTS];

	if (!rl->rate)
		return true;
	if (!b->last_ms) {
		tokens = full;
	} else {
		tokens = b->tokens + (now_ms - b->last_ms) * rl->rate;
		if (tokens > full)
			tokens = full;
	}
	b->last_ms = now_ms ? now_ms : 1;
	if (tokens < 1000) {
		b->tokens = tokens;
		return false;
	}
	b->tokens = tokens - 1000;
	return true;
}

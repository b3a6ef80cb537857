/* ratelimit: per-source token buckets in a fixed table, so a flood cannot grow memory. */
#ifndef PSKTUN_RATELIMIT_H
#define PSKTUN_RATELIMIT_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RATELIMIT_SLOTS 4096	/* sources hashing to one slot share its bucket */

struct ratelimit {
	uint32_t rate;		/* tokens a second; 0: unlimited */
	uint32_t burst;
	struct {
		uint64_t last_ms;
		uint32_t tokens;	/* in thousandths */
	} slot[RATELIMIT_SLOTS];
};

void ratelimit_init(struct ratelimit *rl, uint32_t rate, uint32_t burst);
/* Takes a token for this source's IP (port ignored); false when it has none left. */
bool ratelimit_take(struct ratelimit *rl, const struct sockaddr *from, uint64_t now_ms);
#endif

/* backoff: how long a meter waits after a failed handshake before the next try. */
#include "backoff.h"

uint32_t psktun_backoff_ms(unsigned failures, uint32_t rnd)
{
	uint32_t cap = PSKTUN_BACKOFF_BASE_MS;

	for (unsigned i = 1; i < failures && cap < PSKTUN_BACKOFF_MAX_MS; i++)
		cap *= 2;
	if (cap > PSKTUN_BACKOFF_MAX_MS)
		cap = PSKTUN_BACKOFF_MAX_MS;
	return cap / 2 + rnd % (cap / 2 + 1);
}

/* backoff: how long a meter waits after a failed handshake before the next try. */
#ifndef PSKTUN_BACKOFF_H
#define PSKTUN_BACKOFF_H
#include <stdint.h>

#define PSKTUN_BACKOFF_BASE_MS 2000u
#define PSKTUN_BACKOFF_MAX_MS 300000u

/*
 * Exponential with "equal jitter": after the n-th consecutive failure
 * (n >= 1) the cap is min(BASE << (n - 1), MAX) and the wait is uniformly
 * in [cap / 2, cap], picked by `rnd`. Jitter keeps a router full of meters
 * that failed together (a cloud restart) from retrying in lockstep.
 */
uint32_t psktun_backoff_ms(unsigned failures, uint32_t rnd);
#endif

/* stats: the daemon's counters, with the names psktunctl prints. */
#ifndef PSKTUN_STATS_H
#define PSKTUN_STATS_H
#include <stdint.h>

/* X(name): every counter, in the order psktunctl prints them after "sessions". */
#define PSKTUN_STATS(X) \
	X(handshakes_started) \
	X(handshakes_completed) \
	X(handshakes_failed) \
	X(handshakes_resumed) \
	X(handshakes_evicted) \
	X(plain_in) \
	X(plain_out) \
	X(records_in) \
	X(records_out) \
	X(records_discarded) \
	X(replies_local) \
	X(cookies_sent) \
	X(sessions_opened) \
	X(sessions_closed) \
	X(sessions_replaced) \
	X(silent_reports) \
	X(rehandshakes) \
	X(lost_session_alerts) \
	X(dropped_unknown) \
	X(dropped_malformed) \
	X(dropped_policy) \
	X(dropped_overflow) \
	X(dropped_oversize) \
	X(dropped_limit) \
	X(dropped_send) \
	X(dropped_ring) \
	X(dropped_amplification) \
	X(dropped_closed) \
	X(dropped_kernel) \
	X(ring_nobufs) \
	X(cache_hits) \
	X(cache_misses) \
	X(cache_errors) \
	X(cache_timeouts) \
	X(cache_overflow) \
	X(cache_stores) \
	X(replayed) \
	X(probes_sent) \
	X(probes_answered) \
	X(dead_paths)

struct psktun_stats {
#define X(n) uint64_t n;
	PSKTUN_STATS(X)
#undef X
};
#endif

/* session: one meter's DTLS session, role-free: handshake queue and steps, records, idle close, teardown. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "daemon.h"
#include "dtls.h"
#include "hsslots.h"
#include "log.h"
#include "meters.h"
#include "record.h"
#include "role.h"
#include "rxsock.h"
#include "session.h"
#include "sessionsock.h"
#include "tunnel.h"

#define REPLAY_MAX 4		/* uplink datagrams kept for a replay (sent_keep) */
#define REPLAY_BYTES 2048
#define REPLAY_AGE_MS 30000
#define PROBE_TRIES 3		/* heartbeats, retransmit_ms apart, before a path is dead */

static const char *close_reason_name(enum close_reason why)
{
	switch (why) {
	case CLOSE_IDLE: return "idle";
	case CLOSE_PEER: return "closed by peer";
	case CLOSE_ERROR: return "error";
	case CLOSE_SHUTDOWN: return "shutdown";
	case CLOSE_RELOAD: return "reload";
	case CLOSE_REPLACED: return "replaced by a new handshake";
	case CLOSE_PLUGIN: return "closed by plugin";
	case CLOSE_HANDSHAKE: return "handshake failed";
	case CLOSE_UNUSED: return "unused";
	}
	return "?";
}

struct session *session_find_identity(struct tunnel *t, const char *identity, size_t len)
{
	uint64_t h = identity_hash(identity, len);

	for (struct htab_node *n = htab_first(&t->by_identity, h); n; n = htab_next(n, h)) {
		struct session *s = container_of(n, struct session, by_identity);

		if (s->identity_len == len && !memcmp(s->identity, identity, len))
			return s;
	}
	return NULL;
}

static void session_free(struct session *s)
{
	dgram_queue_clear(&s->queue);
	dgram_queue_clear(&s->sent);
	free(s);
}

static void session_handle_done(struct session *s)
{
	if (--s->open_handles == 0)
		session_free(s);
}

void handle_closed_free_session(uv_handle_t *h)
{
	struct session *s = h->data;

	if (h != (uv_handle_t *)&s->timer)
		free(h);
	session_handle_done(s);
}

void session_sock_closed(void *arg)
{
	session_handle_done(arg);
}

static void on_timer(uv_timer_t *timer);

/* Every change of a session's state goes through here. */
void session_set_state(struct session *s, enum session_state st)
{
	s->state = st;
}

struct session *session_new(struct tunnel *t, const char *identity, size_t len)
{
	struct daemon *d = t->d;
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->t = t;
	if (len > PSKTUN_IDENTITY_MAX)
		len = PSKTUN_IDENTITY_MAX;
	memcpy(s->identity, identity, len);
	s->identity_len = len;
	session_set_state(s, SESSION_NEW);
	s->idle_timeout_s = d->cfg->dtls.idle_timeout_s;
	dgram_queue_init(&s->queue, d->cfg->dtls.queue_len, &d->queue_budget);
	s->sent_budget = (struct dgram_budget){ 0, REPLAY_BYTES };
	dgram_queue_init(&s->sent, REPLAY_MAX, &s->sent_budget);
	uv_timer_init(d->loop, &s->timer);
	s->timer.data = s;
	s->open_handles = 1;
	s->last_rx_ms = daemon_now_ms(d);
	s->alert_ignored = -1;

	s->next = t->sessions;
	if (t->sessions)
		t->sessions->prev = s;
	t->sessions = s;
	t->n_sessions++;
	d->n_sessions++;
	if (len) {
		htab_insert(&t->by_identity, &s->by_identity, identity_hash(s->identity, len));
		s->in_by_identity = true;
	}
	return s;
}

static void wait_remove(struct daemon *d, struct session *s)
{
	struct session **pp = &d->wait_head, *prev = NULL;

	for (; *pp; prev = *pp, pp = &(*pp)->wait_next) {
		if (*pp == s) {
			*pp = s->wait_next;
			if (d->wait_tail == s)
				d->wait_tail = prev;
			break;
		}
	}
	s->waiting = false;
	s->wait_next = NULL;
}

static void handshake_start_now(struct session *s);

/* Every tunnel's shared socket, read until empty (bounded: rxsock_drain). */
static void drain_shared_sockets(struct daemon *d)
{
	for (struct tunnel *t = d->tunnels; t; t = t->next)
		if (t->rx)
			rxsock_drain(t->rx);
}

/*
 * Handshakes a session asks for (the gateway's) start here, in the loop's
 * check (or idle) phase, never in the callback that reads a shared socket. Starting one costs a socket, a
 * connect and a GnuTLS session; when every meter behind a router reports at
 * once (after a power cut), datagrams arrive faster than handshakes start,
 * and while the loop started them the kernel dropped what no longer fit in
 * the shared socket. So the shared sockets are read until empty before each
 * start: reading always comes first, and a datagram waits in a session's
 * bounded queue, counted if it overflows, not in the kernel's. At most
 * HS_STARTS_A_TURN start in one loop iteration, so the replies to those
 * started are read as well.
 */
#define HS_STARTS_A_TURN 16

static void starter_stop(struct daemon *d)
{
	if (!d->starter_open)
		return;
	uv_check_stop(&d->starter_check);
	uv_idle_stop(&d->starter_idle);
}

static void start_turn(struct daemon *d)
{
	for (unsigned n = 0; n < HS_STARTS_A_TURN; n++) {
		struct session *s;

		if (!d->wait_head || d->n_handshaking >= d->cfg->dtls.max_handshakes || d->stopping)
			break;
		drain_shared_sockets(d);	/* may add sessions to the queue, or close some */
		s = d->wait_head;
		if (!s || d->n_handshaking >= d->cfg->dtls.max_handshakes)
			break;
		wait_remove(d, s);
		handshake_start_now(s);
	}
	if (!d->wait_head || d->n_handshaking >= d->cfg->dtls.max_handshakes || d->stopping)
		starter_stop(d);
}

static void on_starter_check(uv_check_t *h)
{
	start_turn(h->loop->data);
}

static void on_starter_idle(uv_idle_t *h)
{
	start_turn(h->loop->data);
}

/* Sessions wait for a start, and a slot is free: start them from the next check phase. */
void session_wait_next_start(struct daemon *d)
{
	if (!d->wait_head || d->n_handshaking >= d->cfg->dtls.max_handshakes || d->stopping)
		return;
	if (!d->starter_open) {
		uv_check_init(d->loop, &d->starter_check);
		uv_idle_init(d->loop, &d->starter_idle);
		d->starter_open = true;
	}
	uv_check_start(&d->starter_check, on_starter_check);
	/* With an idle handle active the loop does not wait in poll: after a
	 * timer or a signal the check phase would come only after the next event. */
	uv_idle_start(&d->starter_idle, on_starter_idle);
}

void session_starter_close(struct daemon *d)
{
	if (!d->starter_open)
		return;
	d->starter_open = false;
	uv_close((uv_handle_t *)&d->starter_check, NULL);
	uv_close((uv_handle_t *)&d->starter_idle, NULL);
}

static void handshaking_end(struct session *s)
{
	struct daemon *d = s->t->d;

	hs_slot_release(d, s);
	if (s->counted_handshaking) {
		s->counted_handshaking = false;
		d->n_handshaking--;
		session_wait_next_start(d);
	}
}

static void close_handle(uv_handle_t *h, struct session *s)
{
	h->data = s;
	s->open_handles++;
	uv_close(h, handle_closed_free_session);
}

/* Drop the socket and the GnuTLS state (a failed attempt, a rehandshake, the end), keep the session. */
static void session_reset_transport(struct session *s)
{
	dtls_session_deinit(s);
	if (s->sock) {
		s->open_handles++;
		session_sock_close(s->sock, session_sock_closed, s);
		s->sock = NULL;
	}
}

void session_close(struct session *s, enum close_reason why)
{
	struct tunnel *t = s->t;
	struct daemon *d = t->d;
	unsigned lost;

	if (s->state == SESSION_CLOSING)
		return;
	if (s->state == SESSION_ESTABLISHED && s->tls &&
	    why != CLOSE_REPLACED && why != CLOSE_PEER && why != CLOSE_ERROR)
		gnutls_bye(s->tls, GNUTLS_SHUT_WR);	/* close_notify; non-blocking, one datagram */
	if (s->state == SESSION_ESTABLISHED || (why != CLOSE_HANDSHAKE && why != CLOSE_UNUSED))
		log_notice("tunnel %s: session %s down (%s; was %s)", t->conf.name,
			   s->identity_len ? SESSION_ID(s) : "(no identity yet)", close_reason_name(why),
			   session_state_name(s->state));
	if (s->state == SESSION_ESTABLISHED)
		d->stats.sessions_closed++;
	meter_session_fold(s);
	t->ops->session_closing(s);
	lost = dgram_queue_clear(&s->queue);
	d->stats.dropped_closed += lost;
	if (s->waiting)
		wait_remove(d, s);
	if (s->in_by_identity)
		htab_remove(&t->by_identity, &s->by_identity);
	if (s->in_by_peer)
		htab_remove(&t->by_peer, &s->by_peer);
	s->in_by_identity = s->in_by_peer = false;
	if (s->replaces)
		s->replaces->replaced_by = NULL;
	if (s->replaced_by) {
		/* The old session ends first: its address now belongs to the
		 * handshake that was to replace it, or that one is orphaned. */
		s->replaced_by->replaces = NULL;
		if (!s->replaced_by->in_by_peer) {
			s->replaced_by->in_by_peer = true;
			htab_insert(&t->by_peer, &s->replaced_by->by_peer,
				    psktun_addr_hash((struct sockaddr *)&s->replaced_by->peer, true));
		}
	}
	s->replaces = s->replaced_by = NULL;

	if (s->prev)
		s->prev->next = s->next;
	else
		t->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	t->n_sessions--;
	d->n_sessions--;

	session_set_state(s, SESSION_CLOSING);
	handshaking_end(s);
	session_reset_transport(s);
	if (s->plugin_timer) {
		close_handle((uv_handle_t *)s->plugin_timer, s);
		s->plugin_timer = NULL;
	}
	/* The timer is embedded: its close callback drops the last reference. */
	s->open_handles--;
	close_handle((uv_handle_t *)&s->timer, s);
}

static void arm(struct session *s, uint64_t ms)
{
	uv_timer_start(&s->timer, on_timer, ms ? ms : 1, 0);
}

/* An established session's one timer: its idle close, or the probe's next step if sooner. */
static void arm_established(struct session *s)
{
	uint64_t now = daemon_now_ms(s->t->d), at = s->last_rx_ms + (uint64_t)s->idle_timeout_s * 1000;

	if (s->probe_at_ms && s->probe_at_ms < at)
		at = s->probe_at_ms;
	arm(s, at > now ? at - now : 0);
}

static void session_established(struct session *s)
{
	struct tunnel *t = s->t;
	struct daemon *d = t->d;
	struct dgram *q;

	session_set_state(s, SESSION_ESTABLISHED);
	s->failures = 0;
	handshaking_end(s);
	d->stats.handshakes_completed++;
	if (gnutls_session_is_resumed(s->tls))
		d->stats.handshakes_resumed++;
	d->stats.sessions_opened++;
	t->ops->established(s);
	if (s->state != SESSION_ESTABLISHED)
		return;
	meter_established(s);
	log_notice("tunnel %s: session %s up (%s%s, %llu ms)", t->conf.name, SESSION_ID(s),
		   t->ops->up_where,
		   gnutls_session_is_resumed(s->tls) ? ", resumed" : "",
		   (unsigned long long)(daemon_now_ms(d) - s->started_ms));
	session_touch(s);
	s->probe_at_ms = 0;
	s->probe_tries = 0;
	if (t->d->cfg->dtls.path_timeout_s && t->ops->keeps_uplink && !s->heartbeat && !t->said_no_heartbeat) {
		t->said_no_heartbeat = true;
		log_notice("tunnel %s: the cloud does not answer heartbeats (RFC 6520): no probe, a dead "
			   "path shows at a meter's next datagram after path_timeout_s", t->conf.name);
	}
	arm_established(s);
	while (s->state == SESSION_ESTABLISHED && (q = dgram_queue_pop(&s->queue))) {
		session_send_tunnel(s, q->data, q->len);
		free(q);
	}
	if (s->closing_after_send && s->state == SESSION_ESTABLISHED)
		session_close(s, CLOSE_PLUGIN);
}

/* A handshake starts: it holds one of max_handshakes' slots until handshaking_end(). */
void session_handshake_begin(struct session *s)
{
	struct daemon *d = s->t->d;

	session_set_state(s, SESSION_HANDSHAKING);
	s->alert_ignored = -1;
	s->counted_handshaking = true;
	d->n_handshaking++;
	if (!s->repeat)
		d->stats.handshakes_started++;
	s->started_ms = daemon_now_ms(d);
	s->heard_peer = s->peer_finished = s->sent_finished = false;
	s->unreachable = s->unknown_identity = false;
}

/* "alert handshake_failure": RFC 5246's name, from GNUTLS_A_HANDSHAKE_FAILURE. */
static void alert_name(gnutls_alert_description_t desc, char *buf, size_t len)
{
	const char *alert = gnutls_alert_get_strname(desc);

	if (alert && !strncmp(alert, "GNUTLS_A_", 9))
		alert += 9;
	if (alert)
		snprintf(buf, len, "alert %s", alert);
	else
		snprintf(buf, len, "alert %d", (int)desc);
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
}

/*
 * A plaintext alert held during a handshake (session_on_record): how long
 * until it ends the handshake, 0 now, UINT64_MAX when none is held or the
 * handshake has moved on since (a forged alert, overtaken by the real flight).
 */
static uint64_t alert_left_ms(struct session *s)
{
	uint64_t limit, elapsed;

	if (s->alert_ignored < 0)
		return UINT64_MAX;
	if (!s->tls || (int)gnutls_handshake_get_last_in(s->tls) != s->alert_last_in) {
		s->alert_ignored = -1;
		return UINT64_MAX;
	}
	limit = 2 * (uint64_t)s->t->d->cfg->dtls.retransmit_ms;
	elapsed = daemon_now_ms(s->t->d) - s->alert_ms;
	return elapsed >= limit ? 0 : limit - elapsed;
}

/* Why a handshake failed, from what GnuTLS said and what the session saw. */
static enum psktun_failure failure_reason(struct session *s, int r, const char **detail,
					  char *buf, size_t len)
{
	bool client = dtls_is_client(s);
	char id[PSKTUN_IDENTITY_MAX + 1];

	*detail = NULL;
	switch (r) {
	case GNUTLS_E_TIMEDOUT:
		if (s->alert_ignored >= 0) {	/* held, and nothing moved the handshake on */
			alert_name((gnutls_alert_description_t)s->alert_ignored, buf, len);
			*detail = buf;
			return PSKTUN_FAIL_peer_alert;
		}
		if (s->unknown_identity)
			return PSKTUN_FAIL_unknown_identity;
		/* A wrong key shows only as a Finished the other side cannot
		 * decrypt, which DTLS drops silently (RFC 6347 4.1.2.7). */
		if (client ? s->sent_finished && s->heard_peer
		       : s->peer_finished && session_named_identity(s, id, sizeof(id)))
			return PSKTUN_FAIL_wrong_key;
		if (!s->heard_peer) {
			if (s->unreachable)
				*detail = "ICMP: port unreachable";
			return PSKTUN_FAIL_no_answer;
		}
		return PSKTUN_FAIL_silent;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		alert_name(gnutls_alert_get(s->tls), buf, len);
		*detail = buf;
		return PSKTUN_FAIL_peer_alert;
	case GNUTLS_E_NO_CIPHER_SUITES:
	case GNUTLS_E_UNKNOWN_CIPHER_SUITE:
	case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
		return PSKTUN_FAIL_no_cipher_suite;
	default:
		*detail = gnutls_strerror_name(r);
		return PSKTUN_FAIL_error;
	}
}

/* A handshake failed: counted, its slot released; the role backs off or closes. */
void session_handshake_failed(struct session *s, enum psktun_failure why, const char *detail)
{
	struct daemon *d = s->t->d;

	if (!s->repeat)
		d->stats.handshakes_failed++;
	handshaking_end(s);
	s->t->ops->handshake_failed(s, why, detail);
}

/* Wait `ms`, then shake hands again if something is queued (on_timer); the
 * socket and GnuTLS state of the failed attempt go, the session stays. */
void session_back_off(struct session *s, uint32_t ms)
{
	session_reset_transport(s);
	session_set_state(s, SESSION_BACKOFF);
	arm(s, ms);
}

void session_handshake_step(struct session *s)
{
	char id[PSKTUN_IDENTITY_MAX + 1], alert[48];
	enum psktun_failure why;
	const char *detail;
	int r;

	dtls_flight_begin(s);
	r = gnutls_handshake(s->tls);
	dtls_flight_end(s);
	hs_slot_step(s);

	if (r == GNUTLS_E_SUCCESS) {
		session_established(s);
		return;
	}
	if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(r)) {
		unsigned ms = gnutls_dtls_get_timeout(s->tls);

		/* 0 after a call means GnuTLS chose not to retransmit (part of
		 * the peer's flight is in): wait for the rest, polling slowly. */
		if (!ms) {
			ms = s->t->d->cfg->dtls.retransmit_ms / 4;
			if (ms < 10)
				ms = 10;
		}
		if (ms > hs_slot_hello_left_ms(s))
			ms = hs_slot_hello_left_ms(s);
		if (ms > alert_left_ms(s))
			ms = alert_left_ms(s);
		arm(s, ms);
		return;
	}
	why = failure_reason(s, r, &detail, alert, sizeof(alert));
	/* Before the client named an identity, no alert can say anything
	 * about keys: tell it why (RFC 5246 7.4.1.3 asks for handshake_failure
	 * when no suite is in common) instead of leaving it to retransmit. */
	if (!dtls_is_client(s) && why != PSKTUN_FAIL_peer_alert &&
	    r != GNUTLS_E_TIMEDOUT && !session_named_identity(s, id, sizeof(id))) {
		dtls_flight_begin(s);
		gnutls_alert_send_appropriate(s->tls, r);
		dtls_flight_end(s);
	}
	session_handshake_failed(s, why, detail);
}

/* A session asks for a handshake: it waits its turn (start_turn), the oldest
 * first, while max_handshakes are in progress; role_ops.handshake_start begins it. */
void session_request_handshake(struct session *s)
{
	struct daemon *d = s->t->d;

	if (s->state == SESSION_CLOSING || s->state == SESSION_HANDSHAKING)
		return;
	session_set_state(s, SESSION_NEW);
	if (!s->waiting) {
		s->waiting = true;
		s->wait_next = NULL;
		if (d->wait_tail)
			d->wait_tail->wait_next = s;
		else
			d->wait_head = s;
		d->wait_tail = s;
	}
	session_wait_next_start(d);
}

/* Its turn (start_turn): the role opens what the handshake needs and begins it. */
static void handshake_start_now(struct session *s)
{
	if (s->state == SESSION_CLOSING || s->state == SESSION_HANDSHAKING)
		return;
	if (s->t->ops->handshake_start)
		s->t->ops->handshake_start(s);
}

static void probe(struct session *s);

static void on_timer(uv_timer_t *timer)
{
	struct session *s = timer->data;
	struct daemon *d = s->t->d;
	uint64_t now, idle_ms;
	char alert[48];

	switch (s->state) {
	case SESSION_HANDSHAKING:
		if (!hs_slot_hello_left_ms(s))
			session_handshake_failed(s, PSKTUN_FAIL_silent, "no second flight in time while slots run short");
		else if (!alert_left_ms(s)) {
			alert_name((gnutls_alert_description_t)s->alert_ignored, alert, sizeof(alert));
			session_handshake_failed(s, PSKTUN_FAIL_peer_alert, alert);
		} else
			session_handshake_step(s);
		break;
	case SESSION_ESTABLISHED:
		now = daemon_now_ms(d);
		if (s->probe_at_ms && now >= s->probe_at_ms) {
			probe(s);
			if (s->state != SESSION_ESTABLISHED)
				break;
		}
		idle_ms = (uint64_t)s->idle_timeout_s * 1000;
		if (now - s->last_rx_ms >= idle_ms)
			session_close(s, CLOSE_IDLE);
		else
			arm_established(s);
		break;
	case SESSION_BACKOFF:
		if (s->queue.n)
			session_request_handshake(s);
		else
			session_close(s, CLOSE_IDLE);
		break;
	case SESSION_NEW:
	case SESSION_RESOLVING:
	case SESSION_CLOSING:
		break;
	}
}

void session_touch(struct session *s)
{
	s->last_rx_ms = daemon_now_ms(s->t->d);
}

void session_set_idle(struct session *s, uint32_t seconds)
{
	uint32_t base = s->t->d->cfg->dtls.idle_timeout_s;

	s->idle_timeout_s = seconds > base ? seconds : base;
}

/*
 * Roles that keep uplink (role_ops.keeps_uplink: the gateway), opaque
 * tunnels (plugins report silence themselves): uplink after uplink with
 * nothing coming back for path_timeout_s means the path is dead
 * (a NAT forgot us, the server restarted); the meter's next retry triggers a
 * new handshake instead of vanishing until the idle timeout.
 */
static bool path_dead(struct session *s)
{
	uint64_t limit = (uint64_t)s->t->d->cfg->dtls.path_timeout_s * 1000, now;

	if (!limit || !s->t->ops->keeps_uplink || s->t->plugin || s->heartbeat)
		return false;	/* with heartbeats the probe decides (probe_arm) */
	now = daemon_now_ms(s->t->d);
	if (!s->unanswered_since_ms) {
		s->unanswered_since_ms = now;
		return false;
	}
	return now - s->unanswered_since_ms >= limit;
}

/*
 * Roles that keep uplink (the gateway): a copy of the uplink sent since the
 * last authenticated downlink record. When the cloud says it lost the session (its plaintext alert, or
 * ICMP port unreachable), what was sent on the dead path never reached a
 * backend: it goes again on the new session (session_replay_sent), so a
 * meter that never retransmits (an MQTT-SN QoS 0 PUBLISH, a CoAP NON) loses
 * nothing to a NAT rebinding or a lost node. Bounded: the newest REPLAY_MAX
 * datagrams, REPLAY_BYTES in all, none older than REPLAY_AGE_MS.
 */
static void sent_keep(struct session *s, const uint8_t *data, size_t len)
{
	if (!s->t->ops->keeps_uplink || len > REPLAY_BYTES)
		return;
	while (s->sent.n && (s->sent.n >= REPLAY_MAX || s->sent_budget.used + len > REPLAY_BYTES))
		free(dgram_queue_pop(&s->sent));	/* the oldest makes room */
	if (dgram_queue_push(&s->sent, data, len) < 0)
		return;
	s->sent.tail->at_ms = daemon_now_ms(s->t->d);
}

static void sent_forget(struct session *s)
{
	dgram_queue_clear(&s->sent);
}

/*
 * The dead-path probe (path_timeout_s, roles that keep uplink, a cloud that
 * agreed to RFC 6520 heartbeats; dtls.c). A meter that sends once and never
 * again gives path_dead() no next datagram to notice a dead path at, and a
 * load balancer may swallow the ICMP error: so path_timeout_s after an uplink
 * record that nothing authenticated has answered, the session pings the cloud.
 * An answer (probe_answered) proves the path; PROBE_TRIES pings retransmit_ms
 * apart unanswered, or the cloud's lost-session alert or ICMP meanwhile
 * (gateway.c), and the path is dead (dead_paths, session_rehandshake): a new handshake, and what went unanswered goes again
 * on it (session_replay_sent). One probe in flight per session, nothing
 * allocated: the session's own timer (arm_established) and GnuTLS's buffer.
 */
static void probe_arm(struct session *s)
{
	uint64_t limit = (uint64_t)s->t->d->cfg->dtls.path_timeout_s * 1000;

	if (!limit || !s->heartbeat || s->probe_at_ms)
		return;		/* off, or one waits or is in flight */
	if (!s->unanswered_since_ms)
		s->unanswered_since_ms = daemon_now_ms(s->t->d);
	s->probe_at_ms = s->unanswered_since_ms + limit;
	s->probe_tries = 0;
	arm_established(s);
}

static void probe(struct session *s)
{
	struct daemon *d = s->t->d;

	s->probe_at_ms = 0;
	if (!s->awaiting_downlink || !s->tls) {	/* answered meanwhile */
		s->probe_tries = 0;
		return;
	}
	if (s->probe_tries < PROBE_TRIES) {
		s->probe_tries++;
		s->probe_at_ms = daemon_now_ms(d) + d->cfg->dtls.retransmit_ms;
		if (dtls_heartbeat_ping(s) < 0) {
			d->stats.dropped_send++;
			return;
		}
		d->stats.probes_sent++;
		log_debug("tunnel %s: session %s: probe %u", s->t->conf.name, SESSION_ID(s), s->probe_tries);
		return;
	}
	log_notice("tunnel %s: session %s: %d probes unanswered: the path to the cloud is dead",
		   s->t->conf.name, SESSION_ID(s), PROBE_TRIES);
	session_rehandshake(s);		/* counts it in dead_paths */
	session_replay_sent(s);
}

/* The cloud answered a probe: the path is alive, and carried what went before it. */
static void probe_answered(struct session *s)
{
	if (!s->probe_tries)
		return;		/* a duplicate */
	s->t->d->stats.probes_answered++;
	s->probe_tries = 0;
	s->probe_at_ms = 0;
	s->awaiting_downlink = false;
	s->unanswered_since_ms = 0;
	sent_forget(s);
}

/* After session_rehandshake: into the queue, out once the new session is up. */
void session_replay_sent(struct session *s)
{
	struct daemon *d = s->t->d;
	uint64_t now = daemon_now_ms(d), age = REPLAY_AGE_MS;
	struct dgram *g;

	if (s->state == SESSION_ESTABLISHED || s->state == SESSION_CLOSING)
		return;	/* no new handshake (one began less than a second ago): kept for the next */
	/* the probe took path_timeout_s and its tries to find the path dead */
	if (s->heartbeat)
		age += (uint64_t)d->cfg->dtls.path_timeout_s * 1000 + PROBE_TRIES * d->cfg->dtls.retransmit_ms;
	while ((g = dgram_queue_pop(&s->sent))) {
		if (now - g->at_ms > age)
			;	/* too old to matter now */
		else if (dgram_queue_push(&s->queue, g->data, g->len) == 0)
			d->stats.replayed++;
		else
			d->stats.dropped_overflow++;	/* queue_len or queue_bytes */
		free(g);
	}
}

int session_send_tunnel(struct session *s, const uint8_t *data, size_t len)
{
	struct daemon *d = s->t->d;
	ssize_t r;
	int q;

	/* It could never leave: not even queued, where it would hold memory
	 * until the handshake ends. */
	if (len > dtls_plain_max(s)) {
		d->stats.dropped_oversize++;
		log_debug("tunnel %s: %zu bytes for %s do not fit one record", s->t->conf.name, len,
			  s->identity_len ? s->identity : "a peer");
		return -EMSGSIZE;
	}
	switch (s->state) {
	case SESSION_ESTABLISHED:
		if (path_dead(s)) {
			session_rehandshake(s);
			if (s->state != SESSION_ESTABLISHED)
				return session_send_tunnel(s, data, len);	/* now queued */
		}
		r = gnutls_record_send(s->tls, data, len);
		if (r < 0) {
			d->stats.dropped_send++;
			log_debug("tunnel %s: record to %s not sent: %s", s->t->conf.name,
				  SESSION_ID(s), gnutls_strerror_name(r));
			return -EIO;
		}
		s->last_uplink_ms = daemon_now_ms(d);
		sent_keep(s, data, len);
		s->awaiting_downlink = true;
		probe_arm(s);
		return 0;
	case SESSION_CLOSING:
		d->stats.dropped_closed++;
		return -ESHUTDOWN;
	case SESSION_NEW:
	case SESSION_RESOLVING:
	case SESSION_HANDSHAKING:
	case SESSION_BACKOFF:
		break;
	}
	q = dgram_queue_push(&s->queue, data, len);
	if (q < 0) {
		d->stats.dropped_overflow++;
		return q;
	}
	if (s->state == SESSION_NEW && !s->waiting)
		session_request_handshake(s);
	return 0;
}

static void on_one_record(struct session *s, const uint8_t *data, size_t len)
{
	struct tunnel *t = s->t;
	struct daemon *d = t->d;
	ssize_t n;

	s->records_in++;
	d->stats.records_in++;
	s->in = data;
	s->in_len = len;
	if (s->state == SESSION_HANDSHAKING) {
		session_handshake_step(s);
	} else if (s->state == SESSION_ESTABLISHED) {
		for (;;) {
			/* A retransmitted last flight makes GnuTLS resend
			 * its own from here: one datagram, as the first time. */
			dtls_flight_begin(s);
			n = gnutls_record_recv(s->tls, d->txbuf, PSKTUN_DGRAM_MAX);
			dtls_flight_end(s);
			if (n > 0) {
				/* Only an authenticated record is a sign of life:
				 * forged ones must not keep a session or a dead path up. */
				session_touch(s);
				s->last_downlink_ms = s->last_rx_ms;
				s->awaiting_downlink = false;
				s->unanswered_since_ms = 0;
				s->probe_at_ms = 0;
				s->probe_tries = 0;
				if (s->sent.n)
					sent_forget(s);	/* the path carried them */
				t->ops->deliver(s, d->txbuf, n);
				if (s->state != SESSION_ESTABLISHED)
					return;
				continue;
			}
			if (n == 0) {
				session_close(s, CLOSE_PEER);
				return;
			}
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				break;
			if (n == GNUTLS_E_HEARTBEAT_PING_RECEIVED)	/* the peer's probe */
				gnutls_heartbeat_pong(s->tls, 0);
			else if (n == GNUTLS_E_HEARTBEAT_PONG_RECEIVED)
				probe_answered(s);
			if (!gnutls_error_is_fatal(n)) {
				log_debug("tunnel %s: %s: %s", t->conf.name, SESSION_ID(s),
					  gnutls_strerror_name(n));
				if (!s->in)
					break;
				continue;
			}
			log_info("tunnel %s: session %s: %s", t->conf.name, SESSION_ID(s),
				 gnutls_strerror_name(n));
			session_close(s, CLOSE_ERROR);
			return;
		}
	}
	s->in = NULL;
	s->in_len = 0;
}

/*
 * A datagram may hold several records (RFC 6347 4.1.1), and psktund sends
 * whole flights that way. GnuTLS is handed one record at a time: it drops
 * the rest of a datagram with a record it discards, and a retransmitted
 * final flight [ClientKeyExchange, ChangeCipherSpec, Finished] starts with
 * a record of the epoch the finished handshake retired. Dropped whole, its
 * Finished (the current epoch) would never make the peer resend its own
 * last flight, and a handshake whose last flight was lost could not end.
 *
 * Each record is checked whole before GnuTLS sees it (record.c): one whose
 * length runs past the datagram would make GnuTLS wait for the rest and
 * swallow the session's next datagrams as its body. Such a record, and
 * what follows it, is dropped, and the datagram counted once in
 * dropped_malformed. A record GnuTLS discards (a duplicate, a retired
 * epoch, one that fails authentication: a network's duplicates look like
 * forgeries there) counts in records_discarded. Neither touches the
 * session: only an authenticated record is a sign of life (on_one_record).
 */
void session_on_record(struct session *s, const uint8_t *data, size_t len)
{
	struct daemon *d = s->t->d;
	gnutls_session_t tls = s->tls;
	unsigned records = 0, discarded = tls ? gnutls_record_get_discarded(tls) : 0;
	bool dropped = false;

	s->air_in++;
	s->air_in_bytes += len;
	s->heard_peer = true;

	/* A new handshake (a plugin's rehandshake) must not get the old one's
	 * records; a datagram of thousands of empty records must not cost
	 * thousands of handshake steps. */
	while (len && s->tls == tls &&
	       (s->state == SESSION_HANDSHAKING || s->state == SESSION_ESTABLISHED)) {
		int n = dtls_record_len(data, len);

		if (n < 0 || ++records > DTLS_RECORDS_MAX) {
			dropped = true;
			break;
		}
		if (s->state == SESSION_HANDSHAKING && data[0] == DTLS_CT_ALERT && dtls_record_epoch(data) == 0) {
			/* Unauthenticated, and GnuTLS ends a handshake on any
			 * alert: one forged datagram would cost a gateway its
			 * back-off, a terminator's peer its handshake_timeout_s.
			 * Held instead: it ends the handshake only if nothing
			 * moves it on within two retransmission intervals
			 * (alert_left_ms), so a real peer's alert still ends it
			 * soon and a forged one is overtaken by the real flight. */
			d->stats.records_discarded++;
			if (s->alert_ignored < 0) {
				s->alert_ignored = dtls_alert_description(data, n);
				s->alert_ms = daemon_now_ms(d);
				s->alert_last_in = s->tls ? (int)gnutls_handshake_get_last_in(s->tls) : -1;
				arm(s, alert_left_ms(s));
			}
			log_debug("tunnel %s: a plaintext alert (%d) during a handshake held",
				  s->t->conf.name, dtls_alert_description(data, n));
		} else if (data[0] == DTLS_CT_HEARTBEAT && dtls_record_epoch(data) == 0) {
			/* RFC 6520 heartbeats travel only once a handshake is
			 * done, in its epoch: a plaintext one is a forgery, and
			 * GnuTLS (which keeps epoch 0 readable) would end the
			 * session or the handshake on a malformed one. */
			d->stats.records_discarded++;
		} else {
			if (s->state == SESSION_HANDSHAKING && dtls_record_epoch(data) > 0)
				s->peer_finished = true;
			on_one_record(s, data, n);
		}
		data += n;
		len -= n;
	}
	if (tls && s->tls == tls)
		d->stats.records_discarded += gnutls_record_get_discarded(tls) - discarded;
	if (dropped)
		d->stats.dropped_malformed++;
}

void session_report_silent(struct session *s)
{
	struct daemon *d = s->t->d;

	d->stats.silent_reports++;
	log_info("tunnel %s: session %s reported silent", s->t->conf.name, SESSION_ID(s));
	session_rehandshake(s);
}

/* Roles that rehandshake (role_ops.rehandshakes: the gateway): the path looks
 * dead; shake hands again from a fresh socket (a NAT may have given us a new
 * port) and keep what is queued. */
void session_rehandshake(struct session *s)
{
	struct daemon *d = s->t->d;

	if (!s->t->ops->rehandshakes || s->state != SESSION_ESTABLISHED)
		return;
	if (s->rehandshake_ms && daemon_now_ms(d) - s->rehandshake_ms < 1000)
		return;
	s->rehandshake_ms = daemon_now_ms(d);
	d->stats.rehandshakes++;
	if (s->probe_tries)	/* a probe was out: unanswered, or the cloud said it lost the session */
		d->stats.dead_paths++;
	s->probe_tries = 0;
	s->probe_at_ms = 0;
	log_notice("tunnel %s: session %s: new handshake on a fresh socket", s->t->conf.name,
		   SESSION_ID(s));
	session_reset_transport(s);
	s->unanswered_since_ms = 0;
	session_set_state(s, SESSION_NEW);
	session_request_handshake(s);
}

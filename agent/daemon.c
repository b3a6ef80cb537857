/* daemon: brings tunnels up and down, handles signals and reloads configuration and keys. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/crypto.h>
#include "daemon.h"
#include "uring.h"
#include "cache.h"
#include "control.h"
#include "dtls.h"
#include "gateway.h"
#include "meters.h"
#include "notify.h"
#include "pluginhost.h"
#include "session.h"
#include "state.h"
#include "tunnel.h"
#include "log.h"
#include "lowprio.h"

static void log_diag(const struct psktun_diag *diag)
{
	for (size_t i = 0; i < diag->n && i < PSKTUN_DIAG_MAX; i++)
		log_err("%s", diag->line[i]);
	if (diag->lost)
		log_err("(%zu more problems not shown)", diag->lost);
}

static void tunnels_close(struct tunnel *head)
{
	for (struct tunnel *t = head, *next; t; t = next) {
		next = t->next;
		tunnel_close(t);
	}
}

static struct tunnel *tunnels_open(struct daemon *d, const struct psktun_config *cfg)
{
	struct tunnel *head = NULL, **tail = &head;
	struct psktun_diag diag;

	psktun_diag_init(&diag);
	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		struct tunnel *t;

		if (tunnel_open(d, cfg, &cfg->tunnels[i], &diag, &t) < 0) {
			log_diag(&diag);
			psktun_diag_deinit(&diag);
			tunnels_close(head);
			return NULL;
		}
		*tail = t;
		tail = &t->next;
	}
	psktun_diag_deinit(&diag);
	for (struct tunnel *t = head; t; t = t->next)
		tunnel_start(t);
	return head;
}

enum { RELOAD_IDLE, RELOAD_PREPARING, RELOAD_COMMITTING, RELOAD_ABORTING };

static void reload_worker_step(struct daemon *d, unsigned cmd);
static void reload_gathered(struct daemon *d);
static void reload_abort(struct daemon *d);
static void reload_load_abandon(struct daemon *d);

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;

	if (d->stopping)	/* a second signal while the sessions close: nothing more to do */
		return;
	if (signum == SIGHUP) {
		log_notice("SIGHUP: reloading %s", d->cfg->path);
		daemon_reload(d);
	} else {
		log_notice("%s: closing every session and exiting", signum == SIGTERM ? "SIGTERM" : "SIGINT");
		state_save(d);	/* before the tunnels, which hold a gateway's resumption data, go */
		daemon_stop(d, 0);
	}
}

void daemon_tell(struct daemon *d, unsigned cmd)
{
	__atomic_fetch_or(&d->cmd, cmd, __ATOMIC_SEQ_CST);
	uv_async_send(&d->wake);
}

static void on_wake(uv_async_t *h)
{
	struct daemon *d = h->data;
	unsigned cmd = __atomic_exchange_n(&d->cmd, 0, __ATOMIC_SEQ_CST);

	if (cmd & (WORKER_PREPARE | WORKER_COMMIT | WORKER_ABORT))
		reload_worker_step(d, cmd);
	if (cmd & WORKER_ACK)
		reload_gathered(d);
	if (cmd & WORKER_DUMP) {
		free(d->dump);
		d->dump = NULL;
		d->dump_len = 0;
		control_sessions_text(d, &d->dump, &d->dump_len);
		show_rows_free(d->show_rows);
		d->show_rows = show_rows_collect(d);
		__atomic_store_n(&d->dump_ready, true, __ATOMIC_SEQ_CST);
		daemon_tell(d->leader, WORKER_DUMPED);
	}
	if (cmd & WORKER_DUMPED)
		control_gathered(d);
	if (cmd & WORKER_STOP)
		daemon_stop(d, 0);
}

static void signal_start(struct daemon *d, uv_signal_t *h, int signum)
{
	uv_signal_init(d->loop, h);
	h->data = d;
	uv_signal_start(h, on_signal, signum);
}

int daemon_start(struct daemon *d, struct psktun_config *cfg, struct psktun_keys *keys)
{
	const char *why = NULL;
	uint64_t seed;
	int r;

	d->cfg = cfg;
	d->keys = keys;
	d->queue_budget.max = cfg->dtls.queue_bytes;
	r = dtls_global_init(d, cfg);
	if (r < 0)
		return r;
	gnutls_rnd(GNUTLS_RND_NONCE, &seed, sizeof(seed));
	psktun_hash_seed(seed);
	r = shared_cache_start(d);	/* connects in the background; serves without it meanwhile */
	if (r < 0)
		return r;
	uv_async_init(d->loop, &d->wake, on_wake);
	d->wake.data = d;
	d->wake_open = true;
	uv_unref((uv_handle_t *)&d->wake);	/* it alone keeps no loop running */
	r = uring_tx_new(d->loop, &d->stats.dropped_send, &d->stats.dropped_ring, &d->uring, &why);
	if (r < 0)
		d->uring = NULL;
	if (d->leader)		/* said once, by the leader: the workers' rings are alike */
		;
	else if (d->uring)
		log_notice("sends on session sockets: io_uring (at most %u in flight)", URING_SLOTS);
	else
		log_notice("sends on session sockets: system calls (io_uring: %s)", why);
	d->tunnels = tunnels_open(d, cfg);
	if (!d->tunnels)
		return -EINVAL;
	if (d->leader) {	/* a worker: the leader handles signals and control */
		log_info("worker %u ready", d->worker);
		return 0;
	}
	state_load(d);	/* the terminator's cache is the process's: the leader fills it */
	if (cfg->control) {
		r = control_start(d, cfg->control);
		if (r < 0) {
			daemon_stop(d, 1);
			return r;
		}
	}
	signal_start(d, &d->sig_hup, SIGHUP);
	signal_start(d, &d->sig_term, SIGTERM);
	signal_start(d, &d->sig_int, SIGINT);
	log_notice("psktund %s ready: %s, %zu tunnel%s, %zu key%s, %u worker%s", PACKAGE_VERSION,
		   cfg->mode == PSKTUN_MODE_GATEWAY ? "gateway" : "terminator", cfg->n_tunnels,
		   cfg->n_tunnels == 1 ? "" : "s", keys->n, keys->n == 1 ? "" : "s",
		   d->n_all ? d->n_all : 1, d->n_all > 1 ? "s" : "");
	notify_systemd("READY=1");
	return 0;
}

void daemon_stop(struct daemon *d, int exit_code)
{
	struct tunnel *t, *next;

	if (d->stopping)
		return;
	d->stopping = true;
	d->exit_code = exit_code;
	if (!d->leader) {
		notify_systemd("STOPPING=1");
		if (d->reload_phase != RELOAD_IDLE)	/* no ack is awaited, no reload ends */
			log_notice("reload abandoned: psktund is stopping");
		for (unsigned i = 1; i < d->n_all; i++)
			daemon_tell(d->all[i], WORKER_STOP);
	}
	/* A leader with workers closes `wake` only after joining them (main.c):
	 * a worker may still be answering a `sessions` request. */
	if (d->wake_open && (d->leader || d->n_all <= 1)) {
		d->wake_open = false;
		uv_close((uv_handle_t *)&d->wake, NULL);
	}
	reload_abort(d);	/* one being prepared: its tunnels never started */
	reload_load_abandon(d);	/* one being read: dropped when its thread is done */
	for (t = d->tunnels; t; t = next) {
		next = t->next;
		tunnel_close(t);
	}
	d->tunnels = NULL;
	sockset_close(&d->sockset);	/* after the sessions: they close their sockets */
	session_starter_close(d);
	uring_tx_close(d->uring);	/* after the sessions: their close_notify alerts */
	d->uring = NULL;
	shared_cache_stop(d);
	control_stop(d);
	if (d->leader || !d->sig_hup.loop)
		return;
	/* The handlers stay until the loop has ended (daemon_signals_close): a
	 * closed uv_signal_t puts back the default action, and a second SIGTERM
	 * during the last close_notify would kill the process. */
	uv_unref((uv_handle_t *)&d->sig_hup);
	uv_unref((uv_handle_t *)&d->sig_term);
	uv_unref((uv_handle_t *)&d->sig_int);
}

void daemon_signals_close(struct daemon *d)
{
	sigset_t set;

	if (d->leader || !d->sig_hup.loop || uv_is_closing((uv_handle_t *)&d->sig_hup))
		return;
	/* Blocked, a late signal stays pending until exit instead of killing us. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_run(d->loop, UV_RUN_DEFAULT);
}

/* Does this session still belong under the new configuration and keys? */
static bool session_still_valid(struct session *s, const struct psktun_config *cfg,
				const struct psktun_keys *keys)
{
	const struct psktun_key *k;
	uint8_t digest[32];
	bool meter = false;

	if (!s->identity_len)	/* a terminator handshake in progress: it will look its key up */
		return true;
	k = psktun_keys_find(keys, s->identity, s->identity_len);
	if (!k)
		return false;
	dtls_key_digest(k, digest);
	if (s->state != SESSION_NEW && s->state != SESSION_RESOLVING &&
	    memcmp(digest, s->key_digest, sizeof(digest)))
		return false;
	if (cfg->mode != PSKTUN_MODE_GATEWAY || s->t->plugin)
		return true;
	for (size_t i = 0; i < cfg->n_meters && !meter; i++)
		meter = !strcmp(cfg->meters[i].identity, s->identity);
	return meter;
}


/*
 * A reload is all or nothing. Prepare does everything that can fail (the
 * configuration, the keys, the plugins' options, the GnuTLS priority, a new
 * tunnel for each new or changed `tunnels` entry, with its socket and its
 * plugin, reading nothing yet) while the running configuration carries on;
 * commit, which cannot fail, then swaps: the sessions that are no longer
 * valid and the replaced tunnels close, the new tunnels start. A prepare that
 * fails rolls back what it opened and leaves everything as it was.
 *
 * A replaced tunnel's accept socket (and shared backend socket) on the same
 * address is shared with its replacement rather than bound again (tunnel.c),
 * so changing a tunnel's options keeps its port. Moving a tunnel between a
 * wildcard and a specific address on the same port is refused: both cannot
 * be bound at once.
 *
 * Workers: the leader prepares first; if that succeeds each worker prepares
 * its own (WORKER_PREPARE) and reports (reload_state, WORKER_ACK). Only when
 * every worker has prepared does the leader commit and tell them to commit;
 * if one failed, all roll back. The leader answers psktunctl and logs the
 * outcome when every worker has done either.
 */
enum { WSTATE_BUSY, WSTATE_PREPARED, WSTATE_FAILED, WSTATE_DONE };

/*
 * What the reload changes for the running sessions, found off the loop: the
 * identities whose key went or changed (pointers into the running store,
 * which the commit frees last), and whether a gateway's `meters` list names
 * the same identities. With a million meters, checking every session's key
 * on the loop would stall it; with this, the commit looks only at sessions
 * whose identity changed (none, usually). A session's identity is always in
 * the store it started under (a handshake needs its key, and a reload closes
 * the sessions whose key went), so one not listed keeps its key.
 */
struct reload_changes {
	bool known;			/* false: not found (out of memory): check every session */
	struct psktun_key_change *v;
	size_t n;
	bool meters_same;		/* gateway: the same `meters` identities in the same order */
};

struct reload {
	struct psktun_config *cfg;
	struct psktun_keys *keys;
	gnutls_priority_t priority;
	struct tunnel *fresh;		/* new and changed tunnels: open, not started */
	struct reload_changes ch;
};

static void reload_free(struct reload *rl)
{
	free(rl->ch.v);
	tunnels_close(rl->fresh);
	if (rl->priority)
		gnutls_priority_deinit(rl->priority);
	psktun_config_free(rl->cfg);
	psktun_keys_free(rl->keys);
	free(rl);
}

static void reload_abort(struct daemon *d)
{
	for (struct tunnel *t = d->tunnels; t; t = t->next) {
		t->retiring = t->sock_handed = t->shared_handed = false;
		t->sock_handed_to = NULL;
	}
	if (d->reload)
		reload_free(d->reload);
	d->reload = NULL;
}

static bool conf_listed(const struct psktun_conf_tunnel *c, const struct psktun_config *cfg)
{
	for (size_t i = 0; i < cfg->n_tunnels; i++)
		if (tunnel_conf_equal(c, &cfg->tunnels[i]))
			return true;
	return false;
}

static struct tunnel *running_with(struct tunnel *list, const struct psktun_conf_tunnel *c)
{
	for (struct tunnel *t = list; t; t = t->next)
		if (tunnel_conf_equal(&t->conf, c))
			return t;
	return NULL;
}

/* One line for the log and psktunctl: the first problem, and whether there are more. */
static void reload_why(struct daemon *d, const struct psktun_diag *diag)
{
	if (!diag->n)
		snprintf(d->reload_why, sizeof(d->reload_why), "out of memory");
	else
		snprintf(d->reload_why, sizeof(d->reload_why), "%s%s", diag->line[0],
			 diag->n + diag->lost > 1 ? " (and more problems: see the log)" : "");
}

/*
 * What a reload reads: the configuration and the key file. A million keys
 * take 1.6 s to parse, sort and check, so this runs in libuv's thread pool
 * while the loop serves on; the rest of the prepare (reload_prepare) and the
 * commit run on the loop. Nothing here touches the daemon.
 */
struct reload_load {
	uv_work_t req;
	struct daemon *d;
	char *path;
	const struct psktun_config *old_cfg;	/* the running ones: read, never changed, */
	const struct psktun_keys *old_keys;	/* until the commit (after this is done) */
	struct psktun_config *cfg;
	struct psktun_keys *keys;
	struct reload_changes ch;
	struct psktun_diag diag;
	int r;
	bool abandoned;			/* the daemon stopped meanwhile */
	void (*done)(struct daemon *d, int r);
};

static void reload_load_free(struct reload_load *ld)
{
	free(ld->ch.v);
	psktun_config_free(ld->cfg);
	psktun_keys_free(ld->keys);
	psktun_diag_deinit(&ld->diag);
	free(ld->path);
	free(ld);
}

static void reload_load_abandon(struct daemon *d)
{
	if (d->reload_load)
		d->reload_load->abandoned = true;
	d->reload_load = NULL;
}

static bool meters_same(const struct psktun_config *a, const struct psktun_config *b)
{
	if (a->n_meters != b->n_meters)
		return false;
	for (size_t i = 0; i < a->n_meters; i++)
		if (strcmp(a->meters[i].identity, b->meters[i].identity))
			return false;
	return true;
}

static int reload_load_read(void *arg)
{
	struct reload_load *ld = arg;
	int r;

	r = psktun_config_load(ld->path, &ld->cfg, &ld->diag);
	if (r == 0)
		r = psktun_keys_load(ld->cfg->keys, true, &ld->keys, &ld->diag);
	if (r == 0)
		r = psktun_config_check_keys(ld->cfg, ld->keys, &ld->diag);
	if (r == 0) {
		ld->ch.known = psktun_keys_changed(ld->old_keys, ld->keys, &ld->ch.v, &ld->ch.n) == 0;
		ld->ch.meters_same = meters_same(ld->old_cfg, ld->cfg);
	}
	return r;
}

/* At a lower priority than the loops: on a busy machine they come first. */
static void reload_load_work(uv_work_t *req)
{
	struct reload_load *ld = req->data;

	ld->r = psktun_lowprio_run(reload_load_read, ld);
}

static int reload_prepare(struct daemon *d, struct reload_load *ld);

static void reload_load_done(uv_work_t *req, int status)
{
	struct reload_load *ld = req->data;
	struct daemon *d = ld->d;
	void (*done)(struct daemon *d, int r);
	int r;

	if (ld->abandoned || status < 0) {
		reload_load_free(ld);
		return;
	}
	d->reload_load = NULL;
	done = ld->done;
	r = reload_prepare(d, ld);
	reload_load_free(ld);
	done(d, r);
}

/* Reads off the loop, then prepares on it; done(d, 0 or a negative errno) follows. */
static void reload_load_start(struct daemon *d, void (*done)(struct daemon *d, int r))
{
	struct reload_load *ld = calloc(1, sizeof(*ld));

	if (ld) {
		ld->d = d;
		ld->done = done;
		ld->req.data = ld;
		psktun_diag_init(&ld->diag);
		ld->path = strdup(d->cfg->path);
		ld->old_cfg = d->cfg;
		ld->old_keys = d->keys;
	}
	if (!ld || !ld->path || d->stopping ||
	    uv_queue_work(d->loop, &ld->req, reload_load_work, reload_load_done) < 0) {
		snprintf(d->reload_why, sizeof(d->reload_why), d->stopping ? "stopping" : "out of memory");
		if (ld)
			reload_load_free(ld);
		done(d, -ENOMEM);
		return;
	}
	d->reload_load = ld;
}

/* The old keys go in the thread pool too: freeing a million takes a while. */
static int keys_free_lowprio(void *keys)
{
	psktun_keys_free(keys);
	return 0;
}

static void keys_free_work(uv_work_t *req)
{
	psktun_lowprio_run(keys_free_lowprio, req->data);
}

static void keys_free_done(uv_work_t *req, int status)
{
	if (status < 0)	/* cancelled: free them here */
		psktun_keys_free(req->data);
	free(req);
}

static void keys_free_later(struct daemon *d, struct psktun_keys *keys)
{
	uv_work_t *req = malloc(sizeof(*req));

	if (req)
		req->data = keys;	/* before the queue: a thread may take it at once */
	if (!req || uv_queue_work(d->loop, req, keys_free_work, keys_free_done) < 0) {
		free(req);
		psktun_keys_free(keys);
	}
}

static int reload_prepare(struct daemon *d, struct reload_load *ld)
{
	struct reload *rl = calloc(1, sizeof(*rl));
	struct psktun_diag *diag = &ld->diag;
	struct tunnel **tail;
	int r = ld->r;

	if (!rl || d->stopping) {
		free(rl);
		snprintf(d->reload_why, sizeof(d->reload_why), rl ? "stopping" : "out of memory");
		return -ENOMEM;
	}
	d->reload = rl;
	tail = &rl->fresh;
	rl->cfg = ld->cfg;
	rl->keys = ld->keys;
	rl->ch = ld->ch;
	ld->cfg = NULL;
	ld->keys = NULL;
	ld->ch.v = NULL;
	if (r == 0 && rl->cfg->mode != d->cfg->mode) {
		psktun_diag_add(diag, rl->cfg->path, 0, "mode cannot change on reload; restart psktund");
		r = -EINVAL;
	}
	if (r == 0)	/* a worker only finds the plugins the leader has loaded */
		r = plugin_check_config(rl->cfg, !d->leader, diag);
	if (r == 0)
		r = dtls_priority_new(&rl->cfg->dtls, &rl->priority, diag);
	if (r == 0) {
		for (struct tunnel *t = d->tunnels; t; t = t->next)
			t->retiring = !conf_listed(&t->conf, rl->cfg);
		for (size_t i = 0; i < rl->cfg->n_tunnels && r == 0; i++) {
			if (running_with(d->tunnels, &rl->cfg->tunnels[i]))
				continue;
			r = tunnel_open(d, rl->cfg, &rl->cfg->tunnels[i], diag, tail);
			if (r == 0)
				tail = &(*tail)->next;
		}
	}
	if (r < 0) {
		log_diag(diag);
		reload_why(d, diag);
		reload_abort(d);
	}
	return r < 0 ? r : 0;
}

/* A kept tunnel's sessions under the new configuration and keys: only those
 * whose identity changed are looked at, unless the changes are not known. */
static void reload_check_sessions(struct tunnel *t, const struct reload *rl, unsigned *kept,
				  unsigned *closed)
{
	const struct reload_changes *ch = &rl->ch;
	bool by_key = ch->known && (t->mode != PSKTUN_MODE_GATEWAY || t->plugin || ch->meters_same);

	if (by_key && !ch->n) {		/* nothing changed for any session: no walk */
		*kept += t->n_sessions;
		return;
	}
	for (struct session *s = t->sessions, *sn; s; s = sn) {
		sn = s->next;
		if ((by_key && !psktun_keys_change_find(ch->v, ch->n, s->identity, s->identity_len)) ||
		    session_still_valid(s, rl->cfg, rl->keys)) {
			(*kept)++;
		} else {
			session_close(s, CLOSE_RELOAD);
			(*closed)++;
		}
	}
}

/* `show`'s records of the identities gone: only those, when the changes are known. */
static void reload_forget_meters(struct tunnel *t, const struct reload_changes *ch)
{
	if (!ch->known) {
		meter_table_prune(t);
		return;
	}
	for (size_t i = 0; i < ch->n; i++)
		if (ch->v[i].removed)
			meter_forget(t, ch->v[i].old->identity, ch->v[i].old->identity_len);
}

/* Cannot fail: everything that could was done by reload_prepare. */
static void reload_commit(struct daemon *d)
{
	struct reload *rl = d->reload;
	struct psktun_config *cfg = rl->cfg, *old_cfg = d->cfg;
	struct psktun_keys *keys = rl->keys, *old_keys = d->keys;
	struct tunnel *old = d->tunnels, *head = NULL, **tail = &head, *t, **pp;
	unsigned kept = 0, closed = 0;

	d->reload = NULL;
	gnutls_priority_deinit(d->priority);	/* for new sessions */
	d->priority = rl->priority;
	d->cfg = cfg;
	d->keys = keys;
	d->queue_budget.max = cfg->dtls.queue_bytes;	/* what is queued stays */

	/* In the new order: unchanged tunnels, with the sessions that are still
	 * valid, and the new ones. */
	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		bool fresh = false;

		for (pp = &old; *pp && ((*pp)->retiring || !tunnel_conf_equal(&(*pp)->conf, &cfg->tunnels[i]));
		     pp = &(*pp)->next)
			;
		if (!*pp) {
			for (pp = &rl->fresh; *pp && strcmp((*pp)->conf.name, cfg->tunnels[i].name); pp = &(*pp)->next)
				;
			fresh = true;
		}
		if (!*pp)	/* cannot be: prepare opened one for each */
			continue;
		t = *pp;
		*pp = t->next;
		t->next = NULL;
		*tail = t;
		tail = &t->next;
		if (fresh)
			continue;
		reload_check_sessions(t, rl, &kept, &closed);
		if (t->mode == PSKTUN_MODE_GATEWAY)
			gateway_bindings_load(t, cfg);
		reload_forget_meters(t, &rl->ch);
	}
	/* What is left of the old list is replaced or removed: close it (the
	 * replacements hold their sockets now), then let the new ones read. */
	for (t = old; t; t = t->next)
		closed += t->n_sessions;
	tunnels_close(old);
	d->tunnels = head;
	for (t = head; t; t = t->next)
		if (!t->started)
			tunnel_start(t);
	rl->cfg = NULL;
	rl->keys = NULL;
	rl->priority = NULL;
	reload_free(rl);
	psktun_config_free(old_cfg);
	keys_free_later(d, old_keys);
	d->reload_kept = kept;
	d->reload_closed = closed;
	session_wait_next_start(d);	/* max_handshakes may have grown */
}

static void reload_tell_workers(struct daemon *d, unsigned cmd)
{
	for (unsigned i = 1; i < d->n_all; i++) {
		__atomic_store_n(&d->all[i]->reload_state, WSTATE_BUSY, __ATOMIC_SEQ_CST);
		daemon_tell(d->all[i], cmd);
	}
}

static void reload_finish(struct daemon *d, int r)
{
	unsigned kept = d->reload_kept, closed = d->reload_closed;

	d->reload_phase = RELOAD_IDLE;
	if (r < 0) {
		log_err("reload failed: %s; the running configuration stays in force", d->reload_why);
	} else {
		for (unsigned i = 1; i < d->n_all; i++) {
			kept += d->all[i]->reload_kept;
			closed += d->all[i]->reload_closed;
		}
		log_notice("configuration reloaded: %zu tunnels, %zu keys; %u sessions kept, %u closed",
			   d->cfg->n_tunnels, d->keys->n, kept, closed);
	}
	notify_systemd("READY=1");
	control_reloaded(d, d->reload_seq, r, d->reload_why);
	if (d->reload_again && !d->stopping) {
		d->reload_again = false;
		daemon_reload(d);
	}
}

/* The leader has prepared: commit alone, or ask the workers to prepare theirs. */
static void leader_prepared(struct daemon *d, int r)
{
	if (r < 0) {
		reload_finish(d, -EINVAL);
		return;
	}
	if (d->n_all <= 1) {
		reload_commit(d);
		reload_finish(d, 0);
		return;
	}
	reload_tell_workers(d, WORKER_PREPARE);
}

void daemon_reload(struct daemon *d)
{
	if (d->leader || d->stopping)
		return;
	if (d->reload_phase != RELOAD_IDLE) {	/* once more when this one ends */
		d->reload_again = true;
		return;
	}
	d->reload_seq++;
	d->reload_phase = RELOAD_PREPARING;
	d->reload_kept = d->reload_closed = 0;
	notify_systemd("RELOADING=1");
	reload_load_start(d, leader_prepared);
}

/* The leader: a worker has reported; go on when all have. */
static void reload_gathered(struct daemon *d)
{
	unsigned failed = 0;

	if (d->leader || d->stopping || d->reload_phase == RELOAD_IDLE)
		return;
	for (unsigned i = 1; i < d->n_all; i++) {
		int st = __atomic_load_n(&d->all[i]->reload_state, __ATOMIC_SEQ_CST);

		if (st == WSTATE_BUSY)
			return;
		if (st == WSTATE_FAILED && !failed)
			failed = i;
	}
	switch (d->reload_phase) {
	case RELOAD_PREPARING:
		if (failed) {
			snprintf(d->reload_why, sizeof(d->reload_why), "worker %u: %.480s", failed,
				 d->all[failed]->reload_why);
			reload_abort(d);
			d->reload_phase = RELOAD_ABORTING;
			reload_tell_workers(d, WORKER_ABORT);
		} else {
			reload_commit(d);
			d->reload_phase = RELOAD_COMMITTING;
			reload_tell_workers(d, WORKER_COMMIT);
		}
		break;
	case RELOAD_COMMITTING:
		reload_finish(d, 0);
		break;
	case RELOAD_ABORTING:
		reload_finish(d, -EINVAL);
		break;
	}
}

/* A worker has prepared (or failed to): tell the leader. */
static void worker_prepared(struct daemon *d, int r)
{
	__atomic_store_n(&d->reload_state, r < 0 ? WSTATE_FAILED : WSTATE_PREPARED, __ATOMIC_SEQ_CST);
	daemon_tell(d->leader, WORKER_ACK);
}

/* A worker: one step the leader asked for, then tell it. */
static void reload_worker_step(struct daemon *d, unsigned cmd)
{
	int st = WSTATE_DONE;

	if (cmd & WORKER_PREPARE) {
		d->reload_kept = d->reload_closed = 0;
		reload_load_start(d, worker_prepared);	/* tells the leader when done */
		return;
	} else if ((cmd & WORKER_COMMIT) && d->reload) {
		reload_commit(d);
	} else {
		reload_abort(d);
	}
	__atomic_store_n(&d->reload_state, st, __ATOMIC_SEQ_CST);
	daemon_tell(d->leader, WORKER_ACK);
}

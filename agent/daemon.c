/* daemon: brings tunnels up and down, handles signals and reloads configuration and keys. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <gnutls/crypto.h>
#include "daemon.h"
#include "log.h"

uint64_t daemon_now_ms(const struct daemon *d)
{
	return uv_now(d->loop);
}

void daemon_rand(void *buf, size_t len)
{
	gnutls_rnd(GNUTLS_RND_NONCE, buf, len);
}

static struct tunnel *tunnels_open(struct daemon *d, const struct psktun_config *cfg)
{
	struct tunnel *head = NULL, **tail = &head;

	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		struct tunnel *t;

		if (tunnel_open(d, &cfg->tunnels[i], cfg->mode, &t) < 0) {
			while (head) {
				t = head->next;
				tunnel_close(head);
				head = t;
			}
			return NULL;
		}
		*tail = t;
		tail = &t->next;
	}
	return head;
}

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

	if (cmd & WORKER_RELOAD)
		daemon_reload(d);
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
	uint64_t seed;
	int r;

	d->cfg = cfg;
	d->keys = keys;
	r = dtls_global_init(d, cfg);
	if (r < 0)
		return r;
	gnutls_rnd(GNUTLS_RND_NONCE, &seed, sizeof(seed));
	psktun_hash_seed(seed);
	uv_async_init(d->loop, &d->wake, on_wake);
	d->wake.data = d;
	d->wake_open = true;
	uv_unref((uv_handle_t *)&d->wake);	/* it alone keeps no loop running */
	d->tunnels = tunnels_open(d, cfg);
	if (!d->tunnels)
		return -EINVAL;
	if (d->leader) {	/* a worker: the leader handles signals and control */
		log_info("worker %u ready", d->worker);
		return 0;
	}
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
		for (unsigned i = 1; i < d->n_all; i++)
			daemon_tell(d->all[i], WORKER_STOP);
	}
	/* A leader with workers closes `wake` only after joining them (main.c):
	 * a worker may still be answering a `sessions` request. */
	if (d->wake_open && (d->leader || d->n_all <= 1)) {
		d->wake_open = false;
		uv_close((uv_handle_t *)&d->wake, NULL);
	}
	for (t = d->tunnels; t; t = next) {
		next = t->next;
		tunnel_close(t);
	}
	d->tunnels = NULL;
	sockset_close(&d->sockset);	/* after the sessions: they close their sockets */
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

static void log_diag(const struct psktun_diag *diag)
{
	for (size_t i = 0; i < diag->n && i < PSKTUN_DIAG_MAX; i++)
		log_err("%s", diag->line[i]);
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

void daemon_reload(struct daemon *d)
{
	struct psktun_config *cfg = NULL, *old_cfg = d->cfg;
	struct psktun_keys *keys = NULL, *old_keys = d->keys;
	struct tunnel *old = d->tunnels, *head = NULL, **tail = &head, *t, *next;
	struct psktun_diag diag;
	unsigned kept = 0, closed = 0;
	int r;

	if (!d->leader) {
		notify_systemd("RELOADING=1");
		for (unsigned i = 1; i < d->n_all; i++)
			daemon_tell(d->all[i], WORKER_RELOAD);
	}
	psktun_diag_init(&diag);
	r = psktun_config_load(old_cfg->path, &cfg, &diag);
	if (r == 0)
		r = psktun_keys_load(cfg->keys, true, &keys, &diag);
	if (r == 0)
		r = psktun_config_check_keys(cfg, keys, &diag);
	if (r == 0 && cfg->mode != old_cfg->mode) {
		psktun_diag_add(&diag, cfg->path, 0, "mode cannot change on reload; restart psktund");
		r = -EINVAL;
	}
	if (r == 0)
		r = dtls_set_priority(d, &cfg->dtls);	/* for new sessions */
	if (r < 0) {
		log_diag(&diag);
		log_err("reload failed; the running configuration stays in force");
		psktun_diag_deinit(&diag);
		psktun_config_free(cfg);
		psktun_keys_free(keys);
		if (!d->leader)
			notify_systemd("READY=1");
		return;
	}
	psktun_diag_deinit(&diag);
	d->cfg = cfg;
	d->keys = keys;

	/* Unchanged tunnels stay, with the sessions that are still valid. */
	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		struct tunnel **pp;

		for (pp = &old; *pp; pp = &(*pp)->next)
			if (tunnel_conf_equal(&(*pp)->conf, &cfg->tunnels[i]))
				break;
		if (!*pp)
			continue;
		t = *pp;
		*pp = t->next;
		t->next = NULL;
		for (struct session *s = t->sessions, *sn; s; s = sn) {
			sn = s->next;
			if (session_still_valid(s, cfg, keys)) {
				kept++;
			} else {
				session_close(s, CLOSE_RELOAD);
				closed++;
			}
		}
		if (t->mode == PSKTUN_MODE_GATEWAY)
			gateway_bindings_load(t, cfg);
		meter_table_prune(t);
		*tail = t;
		tail = &t->next;
	}
	/* Changed or removed tunnels close first, so their ports are free again. */
	for (t = old; t; t = next) {
		next = t->next;
		closed += t->n_sessions;
		tunnel_close(t);
	}
	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		bool have = false;

		for (t = head; t && !have; t = t->next)
			have = !strcmp(t->conf.name, cfg->tunnels[i].name);
		if (have)
			continue;
		if (tunnel_open(d, &cfg->tunnels[i], cfg->mode, &t) < 0) {
			log_err("tunnel %s: could not be opened after reload", cfg->tunnels[i].name);
			continue;
		}
		*tail = t;
		tail = &t->next;
	}
	d->tunnels = head;
	psktun_config_free(old_cfg);
	psktun_keys_free(old_keys);
	session_wait_next_start(d);	/* max_handshakes may have grown */
	log_notice("configuration reloaded: %zu tunnels, %zu keys; %u sessions kept, %u closed",
		   cfg->n_tunnels, keys->n, kept, closed);
	notify_systemd("READY=1");
}

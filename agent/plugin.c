/* plugin: loads protocol plugins (one versioned const struct each) and offers them the host table. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"
#include "pluginhost.h"
#include "role.h"
#include "session.h"
#include "tunnel.h"

struct plugin {
	char name[64];
	void *handle;
	const struct psktun_plugin *p;
};

/* Written only by the thread that loads the configuration before the workers
 * start (main.c) and by the leader while it prepares a reload, which it does
 * before it tells any worker to prepare theirs (daemon.c): a worker only
 * reads it (plugin_find), never while it is written. */
#define PLUGINS_MAX 16
static struct plugin loaded[PLUGINS_MAX];
static size_t n_loaded;

/*
 * Calls into plugins. Each worker runs its own loop on its own thread, so the
 * count and the list are per thread. What a plugin asks of a session during a
 * callback that could end the session or its DTLS state (report_silent,
 * rehandshake) waits here until the outermost callback has returned: the
 * session, its GnuTLS state and the plugin's session_data stay as they were
 * for the whole callback (plugin.h, "What a callback may do").
 */
#define PLUGIN_DEFER_SILENT 0x1u
#define PLUGIN_DEFER_REHANDSHAKE 0x2u
static _Thread_local unsigned calls;
static _Thread_local struct session *deferred;

void plugin_call_begin(void)
{
	calls++;
}

void plugin_call_end(void)
{
	struct session *s;

	if (--calls)
		return;
	/* Session memory outlives this: it is freed only by libuv close
	 * callbacks, which run after the current one returns to the loop. */
	while ((s = deferred)) {
		unsigned what = s->plugin_deferred;

		deferred = s->plugin_deferred_next;
		s->plugin_deferred_next = NULL;
		s->plugin_deferred = 0;
		if (s->state == SESSION_CLOSING)
			continue;
		if (what & PLUGIN_DEFER_SILENT)
			session_report_silent(s);
		else
			session_rehandshake(s);
	}
}

static void defer(struct session *s, unsigned what)
{
	if (!s->plugin_deferred) {
		s->plugin_deferred_next = deferred;
		deferred = s;
	}
	s->plugin_deferred |= what;
}

/* One call into the plugin, counted. */
#define PLUGIN_CALL(expr) (plugin_call_begin(), (expr), plugin_call_end())

#define T(x) ((struct tunnel *)(x))
#define S(x) ((struct session *)(x))
#define PT(x) ((struct psktun_tunnel *)(x))
#define PS(x) ((struct psktun_session *)(x))

const struct plugin *plugin_find(const char *name)
{
	for (size_t i = 0; i < n_loaded; i++)
		if (!strcmp(loaded[i].name, name))
			return &loaded[i];
	return NULL;
}

int plugin_load(const char *dir, const char *name, const struct plugin **out)
{
	const struct psktun_plugin *p;
	char path[4096];
	void *h;

	*out = plugin_find(name);
	if (*out)
		return 0;
	if (n_loaded == PLUGINS_MAX || strlen(name) >= sizeof(loaded[0].name))
		return -ENOSPC;
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_err("plugin %s: cannot load %s: %s", name, path, dlerror());
		return -ENOENT;
	}
	p = dlsym(h, PSKTUN_PLUGIN_SYMBOL);
	if (!p) {
		log_err("plugin %s: %s exports no '%s'; not a psktun plugin", name, path, PSKTUN_PLUGIN_SYMBOL);
		goto refuse;
	}
	if (p->abi != PSKTUN_PLUGIN_ABI) {
		log_err("plugin %s: %s is built for plugin ABI %u, this psktund speaks ABI %u; rebuild it",
			name, path, p->abi, PSKTUN_PLUGIN_ABI);
		goto refuse;
	}
	if (p->size < sizeof(struct psktun_plugin)) {
		log_err("plugin %s: %s has a plugin struct of %u bytes, expected %zu; rebuild it",
			name, path, p->size, sizeof(struct psktun_plugin));
		goto refuse;
	}
	if (!p->name || strcmp(p->name, name)) {
		log_err("plugin %s: %s calls itself '%s'; the file name and the plugin name must match",
			name, path, p->name ? p->name : "(null)");
		goto refuse;
	}
	snprintf(loaded[n_loaded].name, sizeof(loaded[0].name), "%s", name);
	loaded[n_loaded].handle = h;
	loaded[n_loaded].p = p;
	*out = &loaded[n_loaded++];
	log_info("plugin %s %s loaded from %s", name, p->version ? p->version : "", path);
	return 0;
refuse:
	dlclose(h);
	return -EINVAL;
}

void plugin_unload_all(void)
{
	for (size_t i = 0; i < n_loaded; i++)
		dlclose(loaded[i].handle);
	n_loaded = 0;
}

/* The options as the ABI passes them; *out is NULL when there are none. */
static int options_view(const struct psktun_conf_tunnel *c, struct psktun_option **out)
{
	*out = NULL;
	if (!c->n_options)
		return 0;
	*out = calloc(c->n_options, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_options; i++) {
		(*out)[i].key = c->options[i].key;
		(*out)[i].value = c->options[i].value;
	}
	return 0;
}

static int check_options(const struct plugin *pl, const struct psktun_config *cfg,
			 const struct psktun_conf_tunnel *c, struct psktun_diag *diag)
{
	enum psktun_role role = cfg->mode == PSKTUN_MODE_GATEWAY ? PSKTUN_ROLE_GATEWAY
								 : PSKTUN_ROLE_TERMINATOR;
	struct psktun_option *opts;
	char err[256] = "";
	int r;

	if (!pl->p->check_options) {
		if (!c->n_options)
			return 0;
		psktun_diag_add(diag, cfg->path, c->line, "tunnel %s: plugin %s takes no options",
				c->name, c->plugin);
		return -EINVAL;
	}
	r = options_view(c, &opts);
	if (r < 0)
		return r;
	r = pl->p->check_options(role, opts, c->n_options, err, sizeof(err));	/* no host calls: not counted */
	free(opts);
	if (r < 0) {
		err[sizeof(err) - 1] = '\0';
		psktun_diag_add(diag, cfg->path, c->line, "tunnel %s: plugin %s: %s", c->name, c->plugin,
				*err ? err : "invalid options");
		return -EINVAL;
	}
	return 0;
}

int plugin_check_config(const struct psktun_config *cfg, bool load, struct psktun_diag *diag)
{
	int r = 0;

	for (size_t i = 0; i < cfg->n_tunnels; i++) {
		const struct psktun_conf_tunnel *c = &cfg->tunnels[i];
		const struct plugin *pl = NULL;

		if (!c->plugin)
			continue;
		if (load ? plugin_load(cfg->plugin_dir, c->plugin, &pl) < 0 : !(pl = plugin_find(c->plugin))) {
			psktun_diag_add(diag, cfg->path, c->line, "plugin '%s' cannot be loaded from %s",
					c->plugin, cfg->plugin_dir);
			r = -EINVAL;
			continue;
		}
		if (check_options(pl, cfg, c, diag) < 0)
			r = -EINVAL;
	}
	return r;
}

int plugin_tunnel_init(struct tunnel *t, const struct psktun_config *cfg, struct psktun_diag *diag)
{
	const struct psktun_plugin *p = t->plugin->p;
	struct psktun_option *opts;
	int r;

	r = check_options(t->plugin, cfg, &t->conf, diag);
	if (r < 0 || !p->init)
		return r;
	r = options_view(&t->conf, &opts);
	if (r < 0)
		return r;
	PLUGIN_CALL(r = p->init(&plugin_host, PT(t), opts, t->conf.n_options, &t->plugin_data));
	free(opts);
	if (r < 0)
		psktun_diag_add(diag, cfg->path, t->conf.line, "tunnel %s: plugin %s could not open it: %s",
				t->conf.name, t->plugin->name, strerror(-r));
	return r < 0 ? r : 0;
}

void plugin_tunnel_fini(struct tunnel *t)
{
	if (t->plugin && t->plugin->p->fini)
		PLUGIN_CALL(t->plugin->p->fini(t->plugin_data));
	t->plugin_data = NULL;
	t->plugin = NULL;
}

int plugin_identify(struct tunnel *t, const struct sockaddr *from, const uint8_t *buf, size_t len,
		    char *id, size_t *id_len)
{
	int r;

	if (!t->plugin || !t->plugin->p->identify)
		return -ENOENT;
	PLUGIN_CALL(r = t->plugin->p->identify(t->plugin_data, from, buf, len, id, id_len));
	if (r == 0 && (*id_len == 0 || *id_len > PSKTUN_IDENTITY_MAX))
		return -ENOENT;
	return r;
}

enum psktun_verdict plugin_on_plain(struct tunnel *t, struct session *s, const struct sockaddr *from,
				    uint8_t *buf, size_t *len, size_t cap, enum psktun_reason *reason,
				    struct session **target)
{
	struct psktun_dgram ctx = {
		.tunnel = PT(t), .tunnel_data = t->plugin_data, .session = PS(s),
		.session_data = s ? s->plugin_data : NULL, .from = from,
	};
	enum psktun_verdict v;

	if (!t->plugin || !t->plugin->p->on_plain)
		return PSKTUN_FORWARD;
	if (*len + 256 > cap) {	/* the ABI promises room to rewrite; no meter sends 64 KiB */
		*reason = PSKTUN_REASON_MALFORMED;
		return PSKTUN_DROP;
	}
	PLUGIN_CALL(v = t->plugin->p->on_plain(&ctx, buf, len, cap));
	*reason = ctx.reason;
	*target = S(ctx.target);
	if (*len > cap)
		return PSKTUN_DROP;
	return v;
}

bool plugin_refusal(struct tunnel *t, const struct sockaddr *from, uint8_t *buf, size_t *len,
		    size_t cap)
{
	struct psktun_dgram ctx = {
		.tunnel = PT(t), .tunnel_data = t->plugin_data, .from = from,
		.flags = PSKTUN_DGRAM_IDENTITY_REFUSED,
	};
	size_t n = *len;
	enum psktun_verdict v;

	if (!t->plugin || !t->plugin->p->on_plain || n + 256 > cap)
		return false;
	PLUGIN_CALL(v = t->plugin->p->on_plain(&ctx, buf, &n, cap));
	if (v != PSKTUN_REPLY || n == 0 || n > cap)
		return false;
	*len = n;
	return true;
}

enum psktun_verdict plugin_on_tunnel(struct session *s, uint8_t *buf, size_t *len, size_t cap,
				     enum psktun_reason *reason)
{
	struct tunnel *t = s->t;
	struct psktun_dgram ctx = {
		.tunnel = PT(t), .tunnel_data = t->plugin_data, .session = PS(s),
		.session_data = s->plugin_data, .from = (struct sockaddr *)&s->peer,
	};
	enum psktun_verdict v;

	if (!t->plugin || !t->plugin->p->on_tunnel)
		return PSKTUN_FORWARD;
	PLUGIN_CALL(v = t->plugin->p->on_tunnel(&ctx, buf, len, cap));
	*reason = ctx.reason;
	if (*len > cap)
		return PSKTUN_DROP;
	return v;
}

void plugin_session_open(struct session *s)
{
	struct tunnel *t = s->t;
	int r;

	if (!t->plugin || s->plugin_open)
		return;
	s->plugin_open = true;
	if (!t->plugin->p->session_open)
		return;
	PLUGIN_CALL(r = t->plugin->p->session_open(t->plugin_data, PS(s), &s->plugin_data));
	if (r < 0)
		log_warn("tunnel %s: plugin %s could not open session %s", t->conf.name, t->plugin->name,
			 SESSION_ID(s));
}

void plugin_session_close(struct session *s)
{
	struct tunnel *t = s->t;

	if (!s->plugin_open)
		return;
	s->plugin_open = false;
	if (s->plugin_timer)
		uv_timer_stop(s->plugin_timer);
	if (t->plugin && t->plugin->p->session_close)
		PLUGIN_CALL(t->plugin->p->session_close(t->plugin_data, PS(s), s->plugin_data));
	s->plugin_data = NULL;
}

const char *plugin_name(const struct plugin *pl)
{
	return pl ? pl->name : "?";
}

/* What a plugin asks of a session (psktun_host.report_silent, .rehandshake):
 * during a call into a plugin it waits until the outermost call returns. */
void plugin_report_silent(struct session *s)
{
	if (calls)
		defer(s, PLUGIN_DEFER_SILENT);
	else
		session_report_silent(s);
}

void plugin_rehandshake(struct session *s)
{
	if (calls)
		defer(s, PLUGIN_DEFER_REHANDSHAKE);
	else
		session_rehandshake(s);
}

/* A plugin's timers (psktun_host.session_timer, .tunnel_timer). */
static void on_session_timer(uv_timer_t *timer)
{
	struct session *s = timer->data;
	struct tunnel *t = s->t;

	if (s->plugin_open && t->plugin && t->plugin->p->on_session_timer)
		PLUGIN_CALL(t->plugin->p->on_session_timer(t->plugin_data, PS(s), s->plugin_data));
}

/* A plugin's timer (made on first use, freed with its owner): stopped when ms
 * is 0 (returns 0), else ready to start (returns 1); or -ENOMEM. */
static int timer_get(uv_timer_t **timer, uv_loop_t *loop, void *owner, uint32_t ms)
{
	if (!ms) {
		if (*timer)
			uv_timer_stop(*timer);
		return 0;
	}
	if (!*timer) {
		*timer = malloc(sizeof(**timer));
		if (!*timer)
			return -ENOMEM;
		uv_timer_init(loop, *timer);
		(*timer)->data = owner;
	}
	return 1;
}

int plugin_session_timer(struct session *s, uint32_t ms)
{
	int r;

	if (s->state == SESSION_CLOSING)
		return -ESHUTDOWN;
	r = timer_get(&s->plugin_timer, s->t->d->loop, s, ms);
	if (r > 0)
		uv_timer_start(s->plugin_timer, on_session_timer, ms, 0);
	return r < 0 ? r : 0;
}

static void on_tunnel_timer(uv_timer_t *timer)
{
	struct tunnel *t = timer->data;

	if (t->plugin && t->plugin->p->on_tunnel_timer)
		PLUGIN_CALL(t->plugin->p->on_tunnel_timer(t->plugin_data));
}

int plugin_tunnel_timer(struct tunnel *t, uint32_t ms)
{
	int r;

	t->plugin_timer_ms = ms;
	r = timer_get(&t->plugin_timer, t->d->loop, t, ms);
	if (r > 0 && t->started)	/* else tunnel_start arms it: nothing fires before a reload commits */
		plugin_tunnel_timer_start(t);
	return r < 0 ? r : 0;
}

void plugin_tunnel_timer_start(struct tunnel *t)
{
	uint32_t ms = t->plugin_timer_ms;

	t->plugin_timer_ms = 0;
	if (t->plugin_timer && ms)
		uv_timer_start(t->plugin_timer, on_tunnel_timer, ms, 0);
}

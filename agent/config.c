/* config: reads the libconfig file, checks every setting against the schema, fills struct psktun_config. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <libconfig.h>

#include "addr.h"
#include "config.h"
#include "file.h"

#ifndef PSKTUN_PLUGINDIR
#define PSKTUN_PLUGINDIR "/usr/local/lib/psktun"
#endif

#define NAME_MAX_LEN 63

/* One problem, held back so that all of them can be reported in file order. */
struct problem {
	char *file;
	int line;
	size_t seq;	/* order of discovery */
	size_t rank;	/* order of the file */
	char *msg;
};

struct loader {
	const char *path;
	struct psktun_config *c;
	struct psktun_diag *diag;
	struct problem *problems;
	size_t n_problems;
	bool oom;
};

static void problem_at(struct loader *l, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void problem_at(struct loader *l, const char *file, int line, const char *fmt, ...)
{
	struct problem *v, *p;
	va_list ap;
	int r;

	v = realloc(l->problems, (l->n_problems + 1) * sizeof(*v));
	if (!v) {
		l->oom = true;
		return;
	}
	l->problems = v;
	p = &v[l->n_problems];
	va_start(ap, fmt);
	r = vasprintf(&p->msg, fmt, ap);
	va_end(ap);
	p->file = strdup(file ? file : l->path);
	p->line = line;
	p->seq = l->n_problems;
	if (r < 0 || !p->file) {
		if (r >= 0)
			free(p->msg);
		free(p->file);
		l->oom = true;
		return;
	}
	l->n_problems++;
}

/* Problems about a setting name the file it came from (an @include may differ) and its line. */
#define problem(l, s, ...) \
	problem_at((l), (s) ? config_setting_source_file(s) : NULL, \
		   (s) ? (int)config_setting_source_line(s) : 0, __VA_ARGS__)

static int problem_cmp(const void *pa, const void *pb)
{
	const struct problem *a = pa, *b = pb;

	if (a->rank != b->rank)
		return a->rank < b->rank ? -1 : 1;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Reports the problems in file order: the main file first, then included ones, each by line. */
static void flush_problems(struct loader *l)
{
	for (size_t i = 0; i < l->n_problems; i++) {
		struct problem *p = &l->problems[i];

		p->rank = strcmp(p->file, l->path) == 0 ? 0 : i + 1;
		for (size_t j = 0; j < i && p->rank; j++)
			if (strcmp(l->problems[j].file, p->file) == 0)
				p->rank = l->problems[j].rank;
	}
	qsort(l->problems, l->n_problems, sizeof(l->problems[0]), problem_cmp);
	for (size_t i = 0; i < l->n_problems; i++) {
		psktun_diag_add(l->diag, l->problems[i].file, l->problems[i].line, "%s", l->problems[i].msg);
		free(l->problems[i].file);
		free(l->problems[i].msg);
	}
	if (l->oom)
		psktun_diag_add(l->diag, l->path, 0, "out of memory");
	free(l->problems);
	l->problems = NULL;
}

/* A user's string, cut short and with control characters replaced, for quoting in a message. */
static const char *quoted(char *buf, size_t len, const char *s)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	if (s[i] && len > 4)
		memcpy(buf + len - 4, "...", 4);
	return buf;
}

static bool name_in(const char *name, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(name, *names) == 0)
			return true;
	return false;
}

static void check_known(struct loader *l, const config_setting_t *group, const char *where,
			const char *const *names)
{
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);

		if (name_in(s->name, names))
			continue;
		if (where)
			problem(l, s, "unknown setting '%s' in '%s'", s->name, where);
		else
			problem(l, s, "unknown setting '%s'", s->name);
	}
}

static void missing(struct loader *l, const config_setting_t *group, const char *name, const char *where)
{
	if (where)
		problem(l, group, "missing setting '%s' in '%s'", name, where);
	else
		problem_at(l, NULL, 0, "missing setting '%s'", name);
}

/* A string setting: NULL when absent or wrong (then reported). */
static const char *get_string(struct loader *l, const config_setting_t *group, const char *name,
			      const char *where, bool required, const config_setting_t **setting)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	const char *v;

	if (setting)
		*setting = s;
	if (!s) {
		if (required)
			missing(l, group, name, where);
		return NULL;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		problem(l, s, "'%s' must be a string", name);
		return NULL;
	}
	v = config_setting_get_string(s);
	if (!v[0]) {
		problem(l, s, "'%s' must not be empty", name);
		return NULL;
	}
	return v;
}

static void get_uint(struct loader *l, const config_setting_t *group, const char *name,
		     long long min, long long max, unsigned *out)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	long long v;

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
		problem(l, s, "'%s' must be an integer", name);
		return;
	}
	v = config_setting_get_int64(s);
	if (v < min || v > max) {
		problem(l, s, "'%s' must be between %lld and %lld", name, min, max);
		return;
	}
	*out = (unsigned)v;
}

static char *dup_or_fail(struct loader *l, const char *s)
{
	char *d = strdup(s);

	if (!d)
		l->oom = true;
	return d;
}

/* Relative paths resolve against the configuration file's directory. */
static char *resolve(struct loader *l, const char *p)
{
	char *out;

	if (p[0] == '/')
		return dup_or_fail(l, p);
	if (asprintf(&out, "%s%s%s", l->c->dir, strcmp(l->c->dir, "/") ? "/" : "", p) < 0) {
		l->oom = true;
		return NULL;
	}
	return out;
}

/* The directory of path, made absolute: the daemon may chdir("/") after loading. */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *cwd, *abs;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir || dir[0] == '/')
		return dir;
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return dir;	/* keep it relative rather than fail */
	if (strcmp(dir, ".") == 0) {
		free(dir);
		return cwd;
	}
	if (asprintf(&abs, "%s%s%s", cwd, strcmp(cwd, "/") ? "/" : "",
		     strncmp(dir, "./", 2) == 0 ? dir + 2 : dir) < 0)
		abs = NULL;
	free(cwd);
	free(dir);
	return abs;
}

static bool hostname_ok(const char *h)
{
	size_t n = strlen(h);

	if (n == 0 || n > 253)
		return false;
	for (; *h; h++)
		if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
		      (*h >= '0' && *h <= '9') || *h == '-' || *h == '.' || *h == '_'))
			return false;
	return true;
}

/* "host:port" or "[v6]:port" with a numeric port 1..65535. */
static bool hostport_ok(const char *s)
{
	char host[256], port[8];
	struct sockaddr_storage ss;

	if (psktun_hostport_split(s, host, sizeof(host), port, sizeof(port)) < 0)
		return false;
	if (s[0] == '[')
		return psktun_addr_parse(s, true, &ss, NULL) == 0;
	return hostname_ok(host);
}

static bool charset_ok(const char *s, size_t maxlen, bool upper_and_punct)
{
	size_t n = strlen(s);

	if (n == 0 || n > maxlen)
		return false;
	for (; *s; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')
			continue;
		if (upper_and_punct && ((*s >= 'A' && *s <= 'Z') || *s == '.' || *s == '-'))
			continue;
		return false;
	}
	return true;
}

static bool identity_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > PSKTUN_IDENTITY_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ':')
			return false;
	return true;
}

/* An option value as text: plugins see options as strings only. */
static char *option_text(const config_setting_t *s)
{
	char buf[64];

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return strdup(config_setting_get_string(s));
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(buf, sizeof(buf), "%lld", config_setting_get_int64(s));
		return strdup(buf);
	case CONFIG_TYPE_FLOAT: {
		double v = config_setting_get_float(s);

		/* The shortest text that reads back as the same number. */
		snprintf(buf, sizeof(buf), "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, sizeof(buf), "%.17g", v);
		return strdup(buf);
	}
	case CONFIG_TYPE_BOOL:
		return strdup(config_setting_get_bool(s) ? "true" : "false");
	default:
		return NULL;
	}
}

static void load_options(struct loader *l, const config_setting_t *s, struct psktun_conf_tunnel *t)
{
	int n = config_setting_length(s);

	if (!config_setting_is_group(s)) {
		problem(l, s, "'options' must be a group");
		return;
	}
	if (n == 0)
		return;
	t->options = calloc((size_t)n, sizeof(*t->options));
	if (!t->options) {
		l->oom = true;
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *o = config_setting_get_elem(s, (unsigned)i);
		struct psktun_conf_option *opt = &t->options[t->n_options];

		if (config_setting_is_aggregate(o)) {
			problem(l, o, "option '%s' must be a string, number or boolean", o->name);
			continue;
		}
		opt->key = strdup(o->name);
		opt->value = option_text(o);
		t->n_options++;
		if (!opt->key || !opt->value)
			l->oom = true;
	}
}

static void load_tunnel(struct loader *l, const config_setting_t *s, struct psktun_conf_tunnel *t)
{
	static const char *const known[] = { "name", "plugin", "accept", "connect", "options", NULL };
	const config_setting_t *w, *opts;
	const char *v;
	char q[80];

	t->line = (int)config_setting_source_line(s);
	check_known(l, s, "tunnels", known);

	v = get_string(l, s, "name", "tunnels", true, &w);
	if (v && !charset_ok(v, NAME_MAX_LEN, true))
		problem(l, w, "'name' must be 1 to %d characters from A-Z a-z 0-9 _ . -, not \"%s\"",
			NAME_MAX_LEN, quoted(q, sizeof(q), v));
	else if (v)
		t->name = dup_or_fail(l, v);

	v = get_string(l, s, "plugin", "tunnels", false, &w);
	if (v && !charset_ok(v, NAME_MAX_LEN, false))
		problem(l, w, "'plugin' must be 1 to %d characters from a-z 0-9 _, not \"%s\"",
			NAME_MAX_LEN, quoted(q, sizeof(q), v));
	else if (v)
		t->plugin = dup_or_fail(l, v);

	v = get_string(l, s, "accept", "tunnels", true, &w);
	if (v && !hostport_ok(v))
		problem(l, w, "'accept' must be host:port or [v6]:port, not \"%s\"", quoted(q, sizeof(q), v));
	else if (v)
		t->accept = dup_or_fail(l, v);

	v = get_string(l, s, "connect", "tunnels", true, &w);
	if (v && !hostport_ok(v))
		problem(l, w, "'connect' must be host:port or [v6]:port, not \"%s\"", quoted(q, sizeof(q), v));
	else if (v)
		t->connect = dup_or_fail(l, v);

	opts = config_setting_get_member(s, "options");
	if (opts)
		load_options(l, opts, t);
}

static const config_setting_t *get_list(struct loader *l, const config_setting_t *root, const char *name)
{
	const config_setting_t *s = config_setting_get_member(root, name);

	if (s && !config_setting_is_list(s)) {
		/* "()" is a list; an empty "[]" array is as good as an empty list. */
		if (config_setting_is_array(s) && config_setting_length(s) == 0)
			return s;
		problem(l, s, "'%s' must be a list", name);
		return NULL;
	}
	return s;
}

static void load_tunnels(struct loader *l, const config_setting_t *root)
{
	const config_setting_t *list = get_list(l, root, "tunnels");
	struct psktun_config *c = l->c;
	int n;

	if (!config_setting_get_member(root, "tunnels")) {
		missing(l, root, "tunnels", NULL);
		return;
	}
	if (!list)
		return;
	n = config_setting_length(list);
	if (n == 0) {
		problem(l, list, "'tunnels' must not be empty");
		return;
	}
	c->tunnels = calloc((size_t)n, sizeof(*c->tunnels));
	if (!c->tunnels) {
		l->oom = true;
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

		if (!config_setting_is_group(s)) {
			problem(l, s, "each entry in 'tunnels' must be a group");
			continue;
		}
		load_tunnel(l, s, &c->tunnels[c->n_tunnels++]);
	}

	/* A handful of tunnels: pairwise is fine. */
	for (size_t i = 0; i < c->n_tunnels; i++) {
		struct psktun_conf_tunnel *t = &c->tunnels[i];

		for (size_t j = 0; j < i; j++) {
			struct psktun_conf_tunnel *u = &c->tunnels[j];

			if (t->name && u->name && strcmp(t->name, u->name) == 0) {
				problem_at(l, NULL, t->line,
						"duplicate tunnel name '%s' (first at line %d)", t->name, u->line);
				break;
			}
		}
		for (size_t j = 0; j < i; j++) {
			struct psktun_conf_tunnel *u = &c->tunnels[j];

			if (t->accept && u->accept && strcmp(t->accept, u->accept) == 0) {
				problem_at(l, NULL, t->line,
						"accept address '%s' is already used by the tunnel at line %d",
						t->accept, u->line);
				break;
			}
		}
	}
}

static void load_meter(struct loader *l, const config_setting_t *s, struct psktun_conf_meter *m)
{
	static const char *const known[] = { "identity", "source", NULL };
	const config_setting_t *w;
	const char *v;
	char q[80];

	m->line = (int)config_setting_source_line(s);
	check_known(l, s, "meters", known);

	v = get_string(l, s, "identity", "meters", true, &w);
	if (v && !identity_ok(v))
		problem(l, w, "'identity' must be 1 to %d bytes without ':' or control characters",
			PSKTUN_IDENTITY_MAX);
	else if (v)
		m->identity = dup_or_fail(l, v);

	v = get_string(l, s, "source", "meters", true, &w);
	if (v && psktun_addr_parse(v, false, &m->addr, &m->has_port) < 0)
		problem(l, w, "'source' must be a numeric IP or IP:port, not \"%s\"", quoted(q, sizeof(q), v));
	else if (v)
		m->source = dup_or_fail(l, v);
}

static int meter_by_identity(const void *pa, const void *pb)
{
	const struct psktun_conf_meter *a = *(const struct psktun_conf_meter *const *)pa;
	const struct psktun_conf_meter *b = *(const struct psktun_conf_meter *const *)pb;
	int c = strcmp(a->identity, b->identity);

	return c ? c : a->line - b->line;
}

static int meter_by_source(const void *pa, const void *pb)
{
	const struct psktun_conf_meter *a = *(const struct psktun_conf_meter *const *)pa;
	const struct psktun_conf_meter *b = *(const struct psktun_conf_meter *const *)pb;
	uint64_t ha = psktun_addr_hash((const struct sockaddr *)&a->addr, a->has_port);
	uint64_t hb = psktun_addr_hash((const struct sockaddr *)&b->addr, b->has_port);

	/* Any total order in which equal sources are adjacent will do. */
	if (a->has_port != b->has_port)
		return a->has_port ? 1 : -1;
	if (ha != hb)
		return ha < hb ? -1 : 1;
	if (!psktun_addr_equal((const struct sockaddr *)&a->addr, (const struct sockaddr *)&b->addr,
			       a->has_port))
		return memcmp(&a->addr, &b->addr, sizeof(a->addr)) < 0 ? -1 : 1;
	return a->line - b->line;
}

static bool same_source(const struct psktun_conf_meter *a, const struct psktun_conf_meter *b)
{
	return a->has_port == b->has_port &&
	       psktun_addr_equal((const struct sockaddr *)&a->addr, (const struct sockaddr *)&b->addr,
				 a->has_port);
}

/* Meters may number in the thousands: sort pointers instead of comparing every pair. */
static void check_meter_duplicates(struct loader *l)
{
	struct psktun_config *c = l->c;
	struct psktun_conf_meter **v = calloc(c->n_meters + 1, sizeof(*v));
	size_t n = 0;

	if (!v) {
		l->oom = true;
		return;
	}
	for (size_t i = 0; i < c->n_meters; i++)
		if (c->meters[i].identity)
			v[n++] = &c->meters[i];
	qsort(v, n, sizeof(*v), meter_by_identity);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (strcmp(v[i]->identity, v[first]->identity) != 0) {
			first = i;
			continue;
		}
		problem_at(l, NULL, v[i]->line,
				"duplicate meter identity '%s' (first at line %d)", v[i]->identity, v[first]->line);
	}

	n = 0;
	for (size_t i = 0; i < c->n_meters; i++)
		if (c->meters[i].source)
			v[n++] = &c->meters[i];
	qsort(v, n, sizeof(*v), meter_by_source);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (!same_source(v[i], v[first])) {
			first = i;
			continue;
		}
		problem_at(l, NULL, v[i]->line,
				"duplicate meter source '%s' (first at line %d)", v[i]->source, v[first]->line);
	}
	free(v);
}

static void load_meters(struct loader *l, const config_setting_t *root)
{
	const config_setting_t *list = get_list(l, root, "meters");
	struct psktun_config *c = l->c;
	int n;

	if (!list)
		return;
	if (c->mode == PSKTUN_MODE_TERMINATOR) {
		problem(l, list, "'meters' is only allowed in gateway mode");
		return;
	}
	n = config_setting_length(list);
	if (n == 0)
		return;
	c->meters = calloc((size_t)n, sizeof(*c->meters));
	if (!c->meters) {
		l->oom = true;
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

		if (!config_setting_is_group(s)) {
			problem(l, s, "each entry in 'meters' must be a group");
			continue;
		}
		load_meter(l, s, &c->meters[c->n_meters++]);
	}
	check_meter_duplicates(l);
}

static void load_dtls(struct loader *l, const config_setting_t *root)
{
	static const char *const known[] = {
		"priority", "mtu", "retransmit_ms", "handshake_timeout_s", "idle_timeout_s",
		"max_sessions", "max_handshakes", "queue_len", "queue_bytes", "handshake_rate", "handshake_burst",
		"path_timeout_s", "tickets", "ticket_key_file", NULL
	};
	const config_setting_t *s = config_setting_get_member(root, "dtls"), *w;
	struct psktun_conf_dtls *d = &l->c->dtls;
	const char *v;

	if (!s)
		return;
	if (!config_setting_is_group(s)) {
		problem(l, s, "'dtls' must be a group");
		return;
	}
	check_known(l, s, "dtls", known);

	v = get_string(l, s, "priority", "dtls", false, &w);
	if (v) {
		gnutls_priority_t prio;
		const char *err = NULL;
		char q[80];

		if (gnutls_priority_init(&prio, v, &err) < 0) {
			problem(l, w, "'priority' is not a valid GnuTLS priority string (at \"%s\")",
				quoted(q, sizeof(q), err ? err : v));
		} else {
			gnutls_priority_deinit(prio);
			d->priority = dup_or_fail(l, v);
		}
	}
	get_uint(l, s, "mtu", 256, 65535, &d->mtu);
	get_uint(l, s, "retransmit_ms", 100, 60000, &d->retransmit_ms);
	get_uint(l, s, "handshake_timeout_s", 1, 3600, &d->handshake_timeout_s);
	get_uint(l, s, "idle_timeout_s", 1, 86400 * 7, &d->idle_timeout_s);
	get_uint(l, s, "max_sessions", 1, 10000000, &d->max_sessions);
	get_uint(l, s, "max_handshakes", 1, 10000000, &d->max_handshakes);
	get_uint(l, s, "queue_len", 1, 64, &d->queue_len);
	get_uint(l, s, "queue_bytes", 65536, 1u << 30, &d->queue_bytes);
	get_uint(l, s, "handshake_rate", 0, 1000000, &d->handshake_rate);
	get_uint(l, s, "handshake_burst", 1, 1000000, &d->handshake_burst);
	get_uint(l, s, "path_timeout_s", 0, 86400, &d->path_timeout_s);
	w = config_setting_get_member(s, "tickets");
	if (w && config_setting_type(w) != CONFIG_TYPE_BOOL)
		problem(l, w, "'tickets' must be true or false");
	else if (w)
		d->tickets = config_setting_get_bool(w);
	v = get_string(l, s, "ticket_key_file", "dtls", false, &w);
	if (v)
		d->ticket_key_file = resolve(l, v);
	if (v && !d->tickets)
		problem(l, w, "'ticket_key_file' needs 'tickets = true'");
}

/* redis://HOST[:PORT][/DB]: HOST a name or an address ([v6] with a port). */
static bool redis_url_parse(const char *url, struct psktun_conf_cache *c, struct loader *l)
{
	const char *p = url + 8, *slash;
	char hostport[300], host[256], port[16];
	unsigned long v;
	size_t n;
	char *e;

	if (strncmp(url, "redis://", 8))
		return false;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (!n || n >= sizeof(hostport))
		return false;
	memcpy(hostport, p, n);
	hostport[n] = '\0';
	c->redis_port = 6379;
	if (strchr(hostport, ':')) {
		if (!hostport_ok(hostport) ||
		    psktun_hostport_split(hostport, host, sizeof(host), port, sizeof(port)) < 0)
			return false;
		v = strtoul(port, &e, 10);
		if (*e || v < 1 || v > 65535)
			return false;
		c->redis_port = (unsigned)v;
	} else if (hostname_ok(hostport)) {
		memcpy(host, hostport, n + 1);
	} else {
		return false;
	}
	c->redis_db = 0;
	if (slash && slash[1]) {
		v = strtoul(slash + 1, &e, 10);
		if (*e || slash[1] < '0' || slash[1] > '9' || v > 1000000)
			return false;
		c->redis_db = (unsigned)v;
	}
	c->redis_host = dup_or_fail(l, host);
	return true;
}

static void load_cache(struct loader *l, const config_setting_t *root)
{
	static const char *const known[] = { "redis", "key_file", NULL };
	const config_setting_t *s = config_setting_get_member(root, "session_cache"), *w, *kw;
	struct psktun_conf_cache *c = &l->c->cache;
	const char *v;
	char q[80];

	if (!s)
		return;
	if (!config_setting_is_group(s)) {
		problem(l, s, "'session_cache' must be a group");
		return;
	}
	c->line = (int)config_setting_source_line(s);
	if (l->c->mode == PSKTUN_MODE_GATEWAY)
		problem(l, s, "'session_cache' is for terminators; a gateway keeps its own meters' "
			"resumption data (see state_file)");
	check_known(l, s, "session_cache", known);
	v = get_string(l, s, "key_file", "session_cache", false, &kw);
	if (v)
		c->key_file = resolve(l, v);
	v = get_string(l, s, "redis", "session_cache", false, &w);
	if (!v)
		return;
#ifdef HAVE_HIREDIS
	if (!redis_url_parse(v, c, l))
		problem(l, w, "'redis' must be redis://HOST[:PORT][/DB], not \"%s\"", quoted(q, sizeof(q), v));
	else
		c->redis = dup_or_fail(l, v);
	if (!kw)
		problem(l, w, "'redis' needs 'key_file' in 'session_cache': what Redis holds is sealed "
			"with that key");
#else
	(void)q;
	(void)redis_url_parse;
	problem(l, w, "'redis': psktun was built without Redis (configure --with-hiredis, "
		"which needs libhiredis-dev)");
#endif
}

static void load_root(struct loader *l, const config_setting_t *root)
{
	static const char *const known[] = {
		"mode", "keys", "control", "plugin_dir", "workers", "tunnels", "meters", "dtls",
		"state_file", "session_cache", NULL
	};
	struct psktun_config *c = l->c;
	const config_setting_t *w;
	const char *v;
	char q[80];

	check_known(l, root, NULL, known);

	v = get_string(l, root, "mode", NULL, true, &w);
	if (v && strcmp(v, "gateway") == 0)
		c->mode = PSKTUN_MODE_GATEWAY;
	else if (v && strcmp(v, "terminator") == 0)
		c->mode = PSKTUN_MODE_TERMINATOR;
	else if (v)
		problem(l, w, "'mode' must be \"gateway\" or \"terminator\", not \"%s\"", quoted(q, sizeof(q), v));

	v = get_string(l, root, "keys", NULL, true, &w);
	if (v) {
		c->keys = resolve(l, v);
		c->keys_line = (int)config_setting_source_line(w);
	}

	v = get_string(l, root, "control", NULL, false, &w);
	if (v) {
		c->control = resolve(l, v);
		if (c->control && strlen(c->control) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			problem(l, w, "'control' is too long for a unix socket path (at most %zu bytes)",
				sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	}

	v = get_string(l, root, "plugin_dir", NULL, false, &w);
	c->plugin_dir = v ? resolve(l, v) : dup_or_fail(l, PSKTUN_PLUGINDIR);

	c->workers = 1;
	get_uint(l, root, "workers", 1, 64, &c->workers);
	w = config_setting_get_member(root, "workers");
	if (w && c->workers > 1 && c->mode != PSKTUN_MODE_TERMINATOR)
		problem(l, w, "'workers' is for terminators; a gateway runs one loop");

	v = get_string(l, root, "state_file", NULL, false, &w);
	if (v)
		c->state_file = resolve(l, v);

	load_tunnels(l, root);
	load_meters(l, root);
	load_dtls(l, root);
	load_cache(l, root);
}

static void set_defaults(struct psktun_conf_dtls *d)
{
	d->priority = NULL;
	d->mtu = 1280;
	d->retransmit_ms = 9000;
	d->handshake_timeout_s = 120;
	d->idle_timeout_s = 600;
	d->max_sessions = 10000;
	d->max_handshakes = 0;	/* by mode, once it is known: see below */
	d->queue_len = 8;
	/* A router's RAM, not the meters' number, sets this: 4 MiB holds every
	 * meter's first datagrams through a mass handshake (a thousand meters'
	 * 8 full-MTU datagrams would take 10 MiB; CoAP and MQTT-SN send tens of
	 * bytes), and bounds what a LAN flood or a silent cloud can pin. */
	d->queue_bytes = 4u << 20;
	/* A router's meters, and a carrier NAT's routers, share one source IP,
	 * and all shake hands again after a terminator restart. Fair shares of
	 * the handshake slots keep one source from locking others out (hsslots.c);
	 * the rate bounds how fast one source churns through its own share, and
	 * so how long a meter behind the same address keeps its slot when the
	 * address floods: 1000 slots / 100 a second = 10 s, several NB-IoT round
	 * trips. 100 full handshakes a second is about 55 kB/s, more than ten
	 * NB-IoT routers send; a burst of 1000 lets ten gateways (100 handshakes
	 * at a time each) start at once after a restart. Beyond it, hellos are
	 * dropped and the clients' retransmissions ask again. */
	d->handshake_rate = 100;
	d->handshake_burst = 1000;
	d->path_timeout_s = 0;
}

int psktun_config_load(const char *path, struct psktun_config **out, struct psktun_diag *diag)
{
	struct loader l = { .path = path, .diag = diag };
	struct psktun_config *c;
	config_t cfg;
	struct stat st;
	FILE *f;
	int fd, r;

	*out = NULL;
	/* Opened here, not by libconfig: it would block on a FIFO, and it says
	 * only "file I/O error" where we can say why. */
	fd = psktun_file_open(path, &st);
	if (fd == -EINVAL) {
		psktun_diag_add(diag, path, 0, "the configuration is not a regular file (it is %s)",
				psktun_file_kind(st.st_mode));
		return fd;
	}
	if (fd < 0) {
		psktun_diag_add(diag, path, 0, "cannot open: %s", strerror(-fd));
		return fd;
	}
	f = fdopen(fd, "r");
	if (!f) {
		r = -errno;
		close(fd);
		psktun_diag_add(diag, path, 0, "cannot open: %s", strerror(-r));
		return r;
	}

	c = calloc(1, sizeof(*c));
	if (!c) {
		fclose(f);
		psktun_diag_add(diag, path, 0, "out of memory");
		return -ENOMEM;
	}
	l.c = c;
	set_defaults(&c->dtls);
	c->path = strdup(path);
	c->dir = dir_of(path);
	if (!c->path || !c->dir) {
		fclose(f);
		psktun_config_free(c);
		psktun_diag_add(diag, path, 0, "out of memory");
		return -ENOMEM;
	}

	config_init(&cfg);
	config_set_include_dir(&cfg, c->dir);
	r = config_read(&cfg, f);
	fclose(f);
	if (!r) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			psktun_diag_add(diag, path, 0, "cannot read: %s", config_error_text(&cfg));
		else
			psktun_diag_add(diag, config_error_file(&cfg) ? config_error_file(&cfg) : path,
					config_error_line(&cfg), "%s", config_error_text(&cfg));
		config_destroy(&cfg);
		psktun_config_free(c);
		return -EINVAL;
	}
	load_root(&l, config_root_setting(&cfg));
	config_destroy(&cfg);
	/* A gateway's handshakes share one uplink and arrive at one server: a
	 * hundred at a time finish a burst sooner than a thousand that overflow
	 * socket buffers and wait for retransmissions. A terminator serves many
	 * gateways and needs more. */
	if (!c->dtls.max_handshakes)
		c->dtls.max_handshakes = c->mode == PSKTUN_MODE_GATEWAY ? 100 : 1000;

	if (l.n_problems || l.oom) {
		r = l.oom && !l.n_problems ? -ENOMEM : -EINVAL;
		flush_problems(&l);
		psktun_config_free(c);
		return r;
	}
	*out = c;
	return 0;
}

int psktun_config_check_keys(const struct psktun_config *c, const struct psktun_keys *k,
			     struct psktun_diag *diag)
{
	int r = 0;

	for (size_t i = 0; i < c->n_meters; i++) {
		const struct psktun_conf_meter *m = &c->meters[i];

		if (psktun_keys_find(k, m->identity, strlen(m->identity)))
			continue;
		psktun_diag_add(diag, c->path, m->line, "meter '%s' is not in the key file %s",
				m->identity, c->keys);
		r = -EINVAL;
	}
	return r;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

void psktun_conf_tunnel_free(struct psktun_conf_tunnel *c)
{
	free(c->name);
	free(c->plugin);
	free(c->accept);
	free(c->connect);
	for (size_t i = 0; i < c->n_options; i++) {
		free(c->options[i].key);
		free(c->options[i].value);
	}
	free(c->options);
	memset(c, 0, sizeof(*c));
}

int psktun_conf_tunnel_copy(struct psktun_conf_tunnel *dst, const struct psktun_conf_tunnel *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->name = dup_or_null(src->name);
	dst->plugin = dup_or_null(src->plugin);
	dst->accept = dup_or_null(src->accept);
	dst->connect = dup_or_null(src->connect);
	dst->line = src->line;
	if (src->n_options) {
		dst->options = calloc(src->n_options, sizeof(*dst->options));
		if (!dst->options)
			return -ENOMEM;
		dst->n_options = src->n_options;
		for (size_t i = 0; i < src->n_options; i++) {
			dst->options[i].key = dup_or_null(src->options[i].key);
			dst->options[i].value = dup_or_null(src->options[i].value);
			if (!dst->options[i].key || !dst->options[i].value)
				return -ENOMEM;
		}
	}
	if (!dst->name || !dst->accept || !dst->connect || (src->plugin && !dst->plugin))
		return -ENOMEM;
	return 0;
}

void psktun_config_free(struct psktun_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_tunnels; i++)
		psktun_conf_tunnel_free(&c->tunnels[i]);
	free(c->tunnels);
	for (size_t i = 0; i < c->n_meters; i++) {
		free(c->meters[i].identity);
		free(c->meters[i].source);
	}
	free(c->meters);
	free(c->dtls.priority);
	free(c->dtls.ticket_key_file);
	free(c->state_file);
	free(c->cache.redis);
	free(c->cache.redis_host);
	free(c->cache.key_file);
	free(c->path);
	free(c->dir);
	free(c->keys);
	free(c->control);
	free(c->plugin_dir);
	free(c);
}

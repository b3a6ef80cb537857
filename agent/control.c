/* control: the unix socket psktunctl talks to: one command line in, key=value lines out. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "addr.h"
#include "daemon.h"
#include "cache.h"
#include "control.h"
#include "dtls.h"
#include "servercache.h"
#include "meters.h"
#include "session.h"
#include "tunnel.h"
#include "log.h"
#include "text.h"

#define CONTROL_CLIENTS_MAX 16
#define CONTROL_LINE_MAX 256
/* A client that sends no command, or reads no answer, within this long is
 * dropped: 16 silent connections would otherwise lock everyone out. */
#define CONTROL_CLIENT_TIMEOUT_MS 5000

struct ctl_client {
	uv_pipe_t pipe;
	uv_timer_t timer;	/* CONTROL_CLIENT_TIMEOUT_MS from the connection */
	unsigned open_handles;
	bool closing;
	bool in_waiting;	/* on the `waiting` or `reloading` list: the workers will answer */
	unsigned reload_seq;	/* on `reloading`: the reload whose outcome it waits for */
	struct ctl_client *prev, *next;	/* `clients` */
	struct daemon *d;
	char line[CONTROL_LINE_MAX];
	size_t len;
	bool answered;
	bool writing;		/* its answer is on its way: on_written closes it */
	bool show;		/* `show`, not `sessions`: waits for the workers too */
	struct ctl_client *next_waiting;
	uv_write_t req;
	struct text out;
};

/* The leader's loop only: these are never touched by another thread. */
static unsigned n_clients;
static struct ctl_client *clients;	/* open ones, closed when the daemon stops */
static struct ctl_client *waiting;	/* `sessions` clients waiting for the workers */
static struct ctl_client *reloading;	/* `reload` clients waiting for its outcome */
static bool gather_running;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Every worker's counters added up. The others' are read while they run:
 * each is one aligned word read atomically, so the sum is a snapshot within
 * a few datagrams. */
static void stats_sum(struct daemon *d, struct psktun_stats *sum, unsigned *cache_up)
{
	struct daemon *self[1] = { d }, **all = d->n_all ? d->all : self;
	unsigned n_all = d->n_all ? d->n_all : 1;

	memset(sum, 0, sizeof(*sum));
	*cache_up = 0;
	for (unsigned i = 0; i < n_all; i++) {
#define X(n) sum->n += LOAD(all[i]->stats.n);
		PSKTUN_STATS(X)
#undef X
		*cache_up += LOAD(all[i]->cache_up);
	}
}

static void write_stats(struct ctl_client *c)
{
	struct daemon *d = c->d, *self[1] = { d }, **all = d->n_all ? d->all : self;
	unsigned n_all = d->n_all ? d->n_all : 1, sessions = 0, handshaking = 0, cache_up;
	uint64_t queued_bytes = 0;
	uint64_t resumable = 0, resumable_bytes = 0;
	uint64_t failures[PSKTUN_FAIL_MAX] = { 0 };
	struct psktun_stats sum;

	stats_sum(d, &sum, &cache_up);
	for (unsigned i = 0; i < n_all; i++) {
		sessions += LOAD(all[i]->n_sessions);
		handshaking += LOAD(all[i]->n_handshaking);
		queued_bytes += LOAD(all[i]->queue_budget.used);
		for (unsigned f = 0; f < PSKTUN_FAIL_MAX; f++)
			failures[f] += LOAD(all[i]->failures[f]);
	}
	if (d->cfg->mode == PSKTUN_MODE_TERMINATOR) {
		dtls_server_cache_stats(&resumable, &resumable_bytes);
	} else {
		for (struct tunnel *t = d->tunnels; t; t = t->next) {
			resumable += t->resume.n;
			resumable_bytes += t->resume.bytes;
		}
	}
	text_printf(&c->out, "sessions=%u\nhandshaking=%u\n", sessions, handshaking);
	text_printf(&c->out, "queued_bytes=%llu\n", (unsigned long long)queued_bytes);
	text_printf(&c->out, "resumable=%llu\nresumable_bytes=%llu\n", (unsigned long long)resumable,
		    (unsigned long long)resumable_bytes);
	text_printf(&c->out, "io_uring=%d\n", d->uring != NULL);
	if (d->cfg->cache.redis)	/* the shared cache: 1 when every worker is connected */
		text_printf(&c->out, "cache_up=%d\n", cache_up == n_all);
#define X(n) text_printf(&c->out, #n "=%llu\n", (unsigned long long)sum.n);
	PSKTUN_STATS(X)
#undef X
	for (unsigned f = 0; f < PSKTUN_FAIL_MAX; f++)
		text_printf(&c->out, "handshake_failures.%s=%llu\n", psktun_failure_slug(f),
			    (unsigned long long)failures[f]);
}

/* `show`: the rows of every worker (rows[0] the leader's), merged. */
static void show_answer(struct ctl_client *c, struct show_rows **rows, unsigned n)
{
	size_t len = 0;
	char *txt = show_text(c->d, rows, n, &len);
	struct psktun_stats sum;
	unsigned cache_up;

	stats_sum(c->d, &sum, &cache_up);
	shared_cache_show(c->d, &sum, cache_up, c->d->n_all ? c->d->n_all : 1, &c->out);
	if (txt)
		text_printf(&c->out, "%s", txt);
	free(txt);
}

/* One line a session of this worker; runs in the worker's own thread. */
void control_sessions_text(struct daemon *d, char **out, size_t *len)
{
	struct text txt = { NULL, 0, 0 };
	uint64_t now = daemon_now_ms(d);
	char addr[PSKTUN_ADDRSTRLEN], id[PSKTUN_QUOTED_MAX(PSKTUN_IDENTITY_MAX)];

	for (struct tunnel *t = d->tunnels; t; t = t->next) {
		for (struct session *s = t->sessions; s; s = s->next) {
			psktun_addr_format((struct sockaddr *)&s->peer, addr, sizeof(addr));
			/* an identity is one field whatever it holds (log.h) */
			psktun_quote(s->identity, s->identity_len, id, sizeof(id));
			text_printf(&txt, "tunnel=%s identity=%s state=%s peer=%s last_activity_s=%llu "
				    "plain_in=%llu plain_out=%llu records_in=%llu records_out=%llu\n",
				    t->conf.name, s->identity_len ? id : "-",
				    session_state_name(s->state), s->peer.ss_family ? addr : "-",
				    (unsigned long long)((now - s->last_rx_ms) / 1000),
				    (unsigned long long)s->plain_in, (unsigned long long)s->plain_out,
				    (unsigned long long)s->records_in, (unsigned long long)s->records_out);
		}
	}
	*out = txt.p;
	*len = txt.len;
}

static void on_client_handle_closed(uv_handle_t *h)
{
	struct ctl_client *c = h->data;

	if (--c->open_handles)
		return;
	free(c->out.p);
	free(c);
	n_clients--;
}

static void client_close(struct ctl_client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->timer, on_client_handle_closed);
	uv_close((uv_handle_t *)&c->pipe, on_client_handle_closed);	/* cancels a pending write */
}

static void on_client_timeout(uv_timer_t *t)
{
	struct ctl_client *c = t->data;

	if (!c->in_waiting)	/* the gathering answers those, and soon */
		client_close(c);
}

static void on_written(uv_write_t *req, int status)
{
	client_close(req->data);
}

static void send_answer(struct ctl_client *c)
{
	uv_buf_t b = uv_buf_init(c->out.p, c->out.len);

	c->req.data = c;
	c->writing = true;
	if (uv_write(&c->req, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0)
		client_close(c);
}

/* Sessions live in each worker's own lists: ask the workers, answer when all
 * have (control_gathered). Without workers, answer at once. */
static void start_sessions(struct ctl_client *c)
{
	struct daemon *d = c->d;
	char *mine = NULL;
	size_t len = 0;

	if (d->n_all <= 1) {
		if (c->show) {
			struct show_rows *rows = show_rows_collect(d);

			show_answer(c, &rows, 1);
			show_rows_free(rows);
			send_answer(c);
			return;
		}
		control_sessions_text(d, &mine, &len);
		free(c->out.p);
		c->out = (struct text){ mine, len, len };
		send_answer(c);
		return;
	}
	c->next_waiting = waiting;
	c->in_waiting = true;
	waiting = c;
	if (gather_running)
		return;
	gather_running = true;
	for (unsigned i = 1; i < d->n_all; i++) {
		__atomic_store_n(&d->all[i]->dump_ready, false, __ATOMIC_SEQ_CST);
		daemon_tell(d->all[i], WORKER_DUMP);
	}
}

void control_gathered(struct daemon *d)
{
	struct text all = { NULL, 0, 0 };
	struct show_rows **rows;
	char *mine = NULL;
	size_t len = 0;

	if (!gather_running)
		return;
	for (unsigned i = 1; i < d->n_all; i++)
		if (!__atomic_load_n(&d->all[i]->dump_ready, __ATOMIC_SEQ_CST))
			return;
	rows = calloc(d->n_all, sizeof(*rows));
	if (rows) {
		rows[0] = show_rows_collect(d);
		for (unsigned i = 1; i < d->n_all; i++) {
			rows[i] = d->all[i]->show_rows;
			d->all[i]->show_rows = NULL;
		}
	}
	control_sessions_text(d, &mine, &len);
	if (mine)
		text_printf(&all, "%s", mine);
	free(mine);
	for (unsigned i = 1; i < d->n_all; i++) {
		if (d->all[i]->dump)
			text_printf(&all, "%s", d->all[i]->dump);
		free(d->all[i]->dump);
		d->all[i]->dump = NULL;
	}
	gather_running = false;
	while (waiting) {
		struct ctl_client *c = waiting;

		waiting = c->next_waiting;
		c->in_waiting = false;
		/* its timeout may have passed while it waited: a fresh one for
		 * reading the answer, which may be larger than the socket buffer */
		uv_timer_start(&c->timer, on_client_timeout, CONTROL_CLIENT_TIMEOUT_MS, 0);
		if (c->show && rows)
			show_answer(c, rows, d->n_all);
		else if (!c->show && all.len)
			text_printf(&c->out, "%s", all.p);
		send_answer(c);
	}
	free(all.p);
	for (unsigned i = 0; rows && i < d->n_all; i++)
		show_rows_free(rows[i]);
	free(rows);
}

static void answer(struct ctl_client *c)
{
	struct daemon *d = c->d;
	char *cmd = c->line;

	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->pipe);
	cmd[strcspn(cmd, "\r\n")] = '\0';
	if (!strcmp(cmd, "stats")) {
		write_stats(c);
	} else if (!strcmp(cmd, "sessions") || !strcmp(cmd, "show")) {
		c->show = !strcmp(cmd, "show");
		start_sessions(c);
		return;
	} else if (!strcmp(cmd, "reload")) {
		/* the next reload to start answers it (one running now read the
		 * file before the client asked); daemon_reload may answer at once */
		c->reload_seq = d->reload_seq + 1;
		c->in_waiting = true;
		c->next_waiting = reloading;
		reloading = c;
		daemon_reload(d);
		return;
	} else {
		text_printf(&c->out, "error=unknown command '%.64s' (try stats, sessions, show, reload)\n", cmd);
	}
	send_answer(c);
}

void control_reloaded(struct daemon *d, unsigned seq, int r, const char *why)
{
	struct ctl_client **pp = &reloading, *c;

	while ((c = *pp)) {
		if (c->reload_seq > seq) {
			pp = &c->next_waiting;
			continue;
		}
		*pp = c->next_waiting;
		c->in_waiting = false;
		uv_timer_start(&c->timer, on_client_timeout, CONTROL_CLIENT_TIMEOUT_MS, 0);
		if (r < 0)
			text_printf(&c->out, "error=reload failed: %s\n", why);
		else
			text_printf(&c->out, "reload=done\n");
		send_answer(c);
	}
}

static void alloc_line(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_client *c = h->data;

	buf->base = c->line + c->len;
	buf->len = sizeof(c->line) - 1 - c->len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_client *c = st->data;

	if (c->answered)
		return;
	if (nread > 0) {
		c->len += nread;
		c->line[c->len] = '\0';
		if (strchr(c->line, '\n'))
			answer(c);
		else if (c->len >= sizeof(c->line) - 1)
			client_close(c);
		return;
	}
	if (nread == UV_EOF && c->len)
		answer(c);
	else if (nread < 0)
		client_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct daemon *d = server->data;
	struct ctl_client *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->d = d;
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	uv_timer_init(d->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 2;
	c->next = clients;
	if (clients)
		clients->prev = c;
	clients = c;
	n_clients++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
		client_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_client_timeout, CONTROL_CLIENT_TIMEOUT_MS, 0);
	if (n_clients > CONTROL_CLIENTS_MAX) {
		c->answered = true;
		text_printf(&c->out, "error=busy: %u control clients are connected; try again\n",
			    CONTROL_CLIENTS_MAX);
		send_answer(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, alloc_line, on_read);
}

/* The socket this daemon bound, so that at exit it removes that one only. */
static char *bound_path;
static dev_t bound_dev;
static ino_t bound_ino;

/*
 * Is another daemon listening on `path`? 1 yes, 0 no (nothing there, or a
 * stale socket nobody listens on: safe to replace), or a negative errno when
 * the path cannot be used. Non-blocking: a listener whose backlog is full
 * (EAGAIN) is still a listener.
 */
static int control_in_use(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 1
	  : errno == EAGAIN || errno == EINPROGRESS ? 1
	  : errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	return r;
}

/* "the directory D does not exist" when it does not: libuv reports that as EACCES. */
static bool control_dir_missing(const char *path, char *dir, size_t len)
{
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (!slash)
		snprintf(dir, len, ".");
	else
		snprintf(dir, len, "%.*s", slash == path ? 1 : (int)(slash - path), path);
	return stat(dir, &st) < 0 && (errno == ENOENT || errno == ENOTDIR);
}

/* A listening unix socket at `path`, srw-rw---- (root and the daemon's group): fd or -errno. */
static int control_listen(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0117);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int control_start(struct daemon *d, const char *path)
{
	char dir[PATH_MAX];
	struct stat st;
	int fd, r;

	if (control_dir_missing(path, dir, sizeof(dir))) {
		log_err("control socket %s: the directory %s does not exist; create it or change 'control'",
			path, dir);
		return -ENOENT;
	}
	r = control_in_use(path);
	if (r == 1) {
		log_err("control socket %s: another psktund answers there; stop it first, or give this one "
			"another 'control' path", path);
		return -EADDRINUSE;
	}
	if (r == -EEXIST) {
		log_err("control socket %s: the path exists and is not a socket; remove it or change 'control'",
			path);
		return r;
	}
	if (r < 0) {
		log_err("control socket %s: %s", path, strerror(-r));
		return r;
	}
	unlink(path);	/* a stale socket, left by a crashed predecessor (nobody listens) */
	/* Bound here, not by uv_pipe_bind: libuv unlinks the path it bound when
	 * the handle closes, whoever's socket is there by then. */
	r = control_listen(path);
	if (r >= 0) {
		fd = r;
		uv_pipe_init(d->loop, &d->control, 0);
		d->control.data = d;
		d->control_open = true;
		r = uv_pipe_open(&d->control, fd);
		if (r == 0)
			r = uv_listen((uv_stream_t *)&d->control, 8, on_connection);
		else
			close(fd);
		if (r < 0)	/* libuv's errors are negative errno on unix */
			unlink(path);
	}
	if (r < 0) {
		log_err("control socket %s: %s; check that its directory is writable", path, strerror(-r));
		return r;
	}
	free(bound_path);
	bound_path = strdup(path);
	if (bound_path && lstat(path, &st) == 0) {
		bound_dev = st.st_dev;
		bound_ino = st.st_ino;
	}
	return 0;
}

/* Removes the socket only if it is still the one this daemon bound: another
 * daemon may have taken the path over since. */
static void control_unlink(void)
{
	struct stat st;

	if (!bound_path)
		return;
	if (lstat(bound_path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == bound_dev &&
	    st.st_ino == bound_ino)
		unlink(bound_path);
	free(bound_path);
	bound_path = NULL;
}

void control_stop(struct daemon *d)
{
	if (d->leader)	/* a worker: the clients and the gathering are the leader's loop's */
		return;
	while (waiting) {	/* the workers are stopping: no answer is coming */
		struct ctl_client *c = waiting;

		waiting = c->next_waiting;
		c->in_waiting = false;
		client_close(c);
	}
	while (reloading) {	/* no reload ends now: they are told so */
		struct ctl_client *c = reloading;

		reloading = c->next_waiting;
		c->in_waiting = false;
		uv_timer_start(&c->timer, on_client_timeout, CONTROL_CLIENT_TIMEOUT_MS, 0);
		text_printf(&c->out, "error=reload failed: psktund is stopping\n");
		send_answer(c);	/* closes it once written */
	}
	gather_running = false;
	for (struct ctl_client *c = clients, *next; c; c = next) {
		next = c->next;
		if (!c->writing)	/* one being answered closes when written (or timed out) */
			client_close(c);
	}
	if (!d->control_open)
		return;
	d->control_open = false;
	uv_close((uv_handle_t *)&d->control, NULL);
	control_unlink();
}

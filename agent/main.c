/* main: psktund's command line: check (-n), foreground (-f) or daemon, then run the loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daemon.h"
#include "meters.h"
#include "seal.h"
#include "dtls.h"
#include "servercache.h"
#include "notify.h"
#include "pluginhost.h"
#include "log.h"

#define DEFAULT_CONFIG PSKTUN_SYSCONFDIR "/psktun/psktun.conf"

static void usage(FILE *f)
{
	fprintf(f, "usage: psktund [-c FILE] [-f] [-n] [-v]... [-V]\n"
		   "  -c FILE  configuration (default: %s)\n"
		   "  -f       stay in the foreground and log to stderr\n"
		   "  -n       check the configuration and the key file, then exit\n"
		   "  -v       more log detail (repeatable)\n"
		   "  -V       print the version\n"
		   "  -h, --help  this text\n", DEFAULT_CONFIG);
}

static void print_diag(const struct psktun_diag *diag)
{
	for (size_t i = 0; i < diag->n && i < PSKTUN_DIAG_MAX; i++)
		fprintf(stderr, "%s\n", diag->line[i]);
	if (diag->lost)
		fprintf(stderr, "(%zu more problems not shown)\n", diag->lost);
}

/* Everything -n checks, and everything startup needs before it touches the network. */
static int load(const char *path, struct psktun_config **cfg, struct psktun_keys **keys,
		struct psktun_diag *diag)
{
	int r = psktun_config_load(path, cfg, diag);

	if (r < 0)
		return r;
	r = psktun_keys_load((*cfg)->keys, true, keys, diag);
	if (r < 0)
		return r;
	r = psktun_config_check_keys(*cfg, *keys, diag);
	if (r < 0)
		return r;
	r = plugin_check_config(*cfg, true, diag);	/* loads them before any worker starts */
	if ((*cfg)->dtls.ticket_key_file && (*cfg)->mode == PSKTUN_MODE_TERMINATOR) {
		gnutls_datum_t key = { NULL, 0 };

		if (dtls_ticket_key_load((*cfg)->dtls.ticket_key_file, &key, diag) < 0)
			r = -EINVAL;
		if (key.data) {
			gnutls_memset(key.data, 0, key.size);
			gnutls_free(key.data);
		}
	}
	if ((*cfg)->cache.key_file) {
		uint8_t key[PSKTUN_CACHE_KEY_LEN];

		if (psktun_hexkey_load((*cfg)->cache.key_file, "cache key", key, sizeof(key), diag) < 0)
			r = -EINVAL;
		gnutls_memset(key, 0, sizeof(key));
	}
	if ((*cfg)->dtls.priority) {
		gnutls_priority_t prio;
		const char *err = NULL;

		if (gnutls_priority_init(&prio, (*cfg)->dtls.priority, &err) < 0) {
			psktun_diag_add(diag, path, 0, "dtls.priority is not a valid GnuTLS priority string (at \"%s\")",
					err ? err : "");
			r = -EINVAL;
		} else {
			gnutls_priority_deinit(prio);
		}
	}
	return r;
}

static int daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		return -errno;
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

/*
 * A worker thread (terminator, `workers` > 1): its own loop, its own copy of
 * the configuration and keys (nothing mutable is shared but the session
 * cache, which locks), its own SO_REUSEPORT sockets.
 */
static const char *config_path;

static void worker_main(void *arg)
{
	struct daemon *d = arg;
	struct psktun_config *cfg = NULL;
	struct psktun_keys *keys = NULL;
	struct psktun_diag diag;
	uv_loop_t loop;

	uv_loop_init(&loop);
	d->loop = &loop;
	loop.data = d;
	psktun_diag_init(&diag);
	if (psktun_config_load(config_path, &cfg, &diag) < 0 ||
	    psktun_keys_load(cfg->keys, true, &keys, &diag) < 0) {
		for (size_t i = 0; i < diag.n && i < PSKTUN_DIAG_MAX; i++)
			log_err("worker %u: %s", d->worker, diag.line[i]);
		psktun_diag_deinit(&diag);
		psktun_config_free(cfg);
		psktun_keys_free(keys);
		d->start_result = -EINVAL;
		uv_sem_post(d->started);
		uv_loop_close(&loop);
		return;
	}
	psktun_diag_deinit(&diag);
	d->start_result = daemon_start(d, cfg, keys);
	if (d->start_result < 0)
		daemon_stop(d, 1);
	uv_sem_post(d->started);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	dtls_global_deinit(d);
	psktun_config_free(d->cfg);
	psktun_keys_free(d->keys);
}

/* Starts workers 1..n-1 and waits until each has bound its sockets (or failed). */
static int workers_start(struct daemon *leader, unsigned n, uv_thread_t *tid, uv_sem_t *started)
{
	int r = 0;

	leader->all = calloc(n, sizeof(*leader->all));
	if (!leader->all)
		return -ENOMEM;
	leader->all[0] = leader;
	leader->n_all = 1;
	leader->reuseport = true;
	uv_sem_init(started, 0);
	for (unsigned i = 1; i < n; i++) {
		struct daemon *w = calloc(1, sizeof(*w));

		if (!w) {
			r = -ENOMEM;
			break;
		}
		w->worker = i;
		w->leader = leader;
		w->reuseport = true;
		w->started = started;
		leader->all[leader->n_all++] = w;
		if (uv_thread_create(&tid[i], worker_main, w) < 0) {
			leader->n_all--;
			free(w);
			r = -EAGAIN;
			break;
		}
		uv_sem_wait(started);
		if (w->start_result < 0) {
			r = w->start_result;
			break;
		}
	}
	return r;
}

static void workers_join(struct daemon *leader, uv_thread_t *tid)
{
	for (unsigned i = 1; i < leader->n_all; i++) {
		uv_thread_join(&tid[i]);
		free(leader->all[i]->dump);
		show_rows_free(leader->all[i]->show_rows);
		free(leader->all[i]);
	}
	free(leader->all);
	leader->all = NULL;
	leader->n_all = 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	bool foreground = false, check = false;
	int verbosity = 0, opt, r;
	struct psktun_config *cfg = NULL;
	struct psktun_keys *keys = NULL;
	struct psktun_diag diag;
	static struct daemon d;
	uv_thread_t tid[64];
	uv_sem_t started;
	struct sigaction ignore = { .sa_handler = SIG_IGN };

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};

	/* A control client that hangs up before reading its answer turns the
	 * answer's write into EPIPE, and the default SIGPIPE into our death.
	 * libuv writes to unix sockets with write(2), which has no MSG_NOSIGNAL,
	 * so the signal is ignored for the whole process, before any thread. */
	sigaction(SIGPIPE, &ignore, NULL);
	while ((opt = getopt_long(argc, argv, "c:fnvVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'f': foreground = true; break;
		case 'n': check = true; break;
		case 'v': verbosity++; break;
		case 'V': printf("psktund %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	psktun_log_init(foreground || check, verbosity);
	psktun_diag_init(&diag);
	r = load(path, &cfg, &keys, &diag);
	if (r < 0 || diag.n) {
		print_diag(&diag);
		if (!check)
			fprintf(stderr, "psktund: not started: fix the configuration above (check with psktund -n -c %s)\n", path);
		psktun_diag_deinit(&diag);
		psktun_config_free(cfg);
		psktun_keys_free(keys);
		plugin_unload_all();
		return 1;
	}
	psktun_diag_deinit(&diag);
	if (check) {
		printf("configuration OK\n");
		psktun_config_free(cfg);
		psktun_keys_free(keys);
		plugin_unload_all();
		return 0;
	}
	if (!foreground && daemonize() < 0) {
		fprintf(stderr, "psktund: cannot become a daemon: %s\n", strerror(errno));
		return 1;
	}
	if (!foreground)
		psktun_keys_relock(keys);	/* fork() kept the pages out of dumps, not locked */
	d.loop = uv_default_loop();
	d.loop->data = &d;
	config_path = path;
	r = cfg->workers > 1 ? workers_start(&d, cfg->workers, tid, &started) : 0;
	if (r == 0)
		r = daemon_start(&d, cfg, keys);
	if (r < 0) {
		log_err("not started");
		daemon_stop(&d, 1);
	}
	uv_run(d.loop, UV_RUN_DEFAULT);
	if (d.all) {
		workers_join(&d, tid);
		uv_sem_destroy(&started);
	}
	if (d.wake_open) {
		d.wake_open = false;
		uv_close((uv_handle_t *)&d.wake, NULL);
		uv_run(d.loop, UV_RUN_DEFAULT);
	}
	daemon_signals_close(&d);
	uv_loop_close(d.loop);
	dtls_global_deinit(&d);
	dtls_server_cache_deinit();
	psktun_config_free(d.cfg);
	psktun_keys_free(d.keys);
	plugin_unload_all();
	if (!d.exit_code)
		log_notice("stopped");
	psktun_log_deinit();
	return d.exit_code;
}

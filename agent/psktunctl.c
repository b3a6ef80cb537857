/* psktunctl: asks a running psktund for stats, sessions or a reload over its control socket; makes keys. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "genkey.h"

#define DEFAULT_SOCKET "/run/psktun/control"

static void usage(FILE *f)
{
	fprintf(f, "usage: psktunctl [-s SOCKET] stats | sessions | reload | metrics\n"
		   "       psktunctl genkey [-a] [-o FILE] IDENTITY... | - | -p PREFIX -n COUNT\n"
		   "  -s SOCKET  the daemon's control socket (default: %s)\n"
		   "  -h, --help this text; psktunctl genkey --help: genkey's options\n", DEFAULT_SOCKET);
}

/* Sends one command, reads the whole answer into a malloc'd string. */
static int ask(const char *path, const char *cmd, char **out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = 0, cap = 8192;
	char *buf;
	ssize_t n;
	int fd, send_err = 0;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	/* No SIGPIPE: a daemon that refuses us (too many clients) answers and
	 * hangs up, maybe before our command is written; the answer is read. */
	if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t)strlen(cmd) ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) != 1)
		send_err = errno ? errno : EIO;
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += n;
		if (cap - len < 1024) {
			char *p = realloc(buf, cap * 2);

			if (!p) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = p;
			cap *= 2;
		}
	}
	close(fd);
	if (!len && send_err) {
		free(buf);
		return -send_err;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* A stats line: NAME=DIGITS, NAME from [a-z0-9_] (a valid metric name once prefixed). */
static bool stat_line(const char *line, size_t len)
{
	size_t i = 0, eq;

	while (i < len && ((line[i] >= 'a' && line[i] <= 'z') || (line[i] >= '0' && line[i] <= '9') ||
			   line[i] == '_'))
		i++;
	if (i == 0 || i == len || line[i] != '=')
		return false;
	eq = i++;
	if (i == len || eq > 64)
		return false;
	for (; i < len; i++)
		if (line[i] < '0' || line[i] > '9')
			return false;
	return true;
}

/* The stats lines that are levels, not counts: Prometheus gauges. */
static bool is_gauge(const char *name, size_t len)
{
	static const char *const gauges[] = {
		"sessions", "handshaking", "resumable", "resumable_bytes", "queued_bytes", "io_uring",
	};

	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++)
		if (strlen(gauges[i]) == len && !strncmp(name, gauges[i], len))
			return true;
	return false;
}

/*
 * The stats answer as Prometheus text: counters get _total, the rest are
 * gauges. All or nothing: a line that is not NAME=DIGITS makes it an error
 * (stderr, exit 1) and nothing reaches stdout, so a scraper never reads a
 * broken exposition.
 */
static int print_metrics(const char *stats)
{
	size_t n = 0;
	char *text = NULL;
	FILE *f;

	for (const char *p = stats, *nl; *p; p = nl + 1) {
		size_t len = strcspn(p, "\n");

		nl = p + len;
		if (!*nl || !stat_line(p, len)) {
			fprintf(stderr, "psktunctl: psktund's stats answer has a line that is not NAME=NUMBER: \"%.*s\"\n",
				(int)(len > 80 ? 80 : len), p);
			return 1;
		}
	}
	if (!*stats) {
		fprintf(stderr, "psktunctl: psktund sent no stats\n");
		return 1;
	}
	f = open_memstream(&text, &n);
	if (!f) {
		fprintf(stderr, "psktunctl: out of memory\n");
		return 1;
	}
	for (const char *p = stats, *eq, *nl; *p; p = nl + 1) {
		int len;
		bool gauge;

		eq = strchr(p, '=');
		nl = strchr(p, '\n');
		len = (int)(eq - p);
		gauge = is_gauge(p, (size_t)len);
		fprintf(f, "# TYPE psktun_%.*s%s %s\npsktun_%.*s%s %.*s\n", len, p, gauge ? "" : "_total",
			gauge ? "gauge" : "counter", len, p, gauge ? "" : "_total", (int)(nl - eq - 1), eq + 1);
	}
	if (fclose(f) != 0) {
		free(text);
		fprintf(stderr, "psktunctl: out of memory\n");
		return 1;
	}
	fwrite(text, 1, n, stdout);
	free(text);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET, *cmd;
	char *out = NULL;
	int opt, r;

	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};

	while ((opt = getopt_long(argc, argv, "+s:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': path = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (!strcmp(cmd, "genkey"))
		return psktunctl_genkey(argc - optind, argv + optind);
	if (optind + 1 != argc || (strcmp(cmd, "stats") && strcmp(cmd, "sessions") &&
				   strcmp(cmd, "reload") && strcmp(cmd, "metrics"))) {
		usage(stderr);
		return 2;
	}
	r = ask(path, !strcmp(cmd, "metrics") ? "stats" : cmd, &out);
	if (r < 0) {
		fprintf(stderr, "psktunctl: cannot talk to psktund at %s: %s (is it running, with control = \"%s\"?)\n",
			path, strerror(-r), path);
		return 1;
	}
	/* An error is the daemon's whole answer: it goes to stderr, never into
	 * the stream a script or a scraper reads. */
	if (!strncmp(out, "error=", 6)) {
		size_t len = strcspn(out + 6, "\n");

		fprintf(stderr, "psktunctl: %.*s\n", (int)len, out + 6);
		free(out);
		return 1;
	}
	if (!*out && strcmp(cmd, "sessions")) {	/* no sessions is an empty answer; nothing else is */
		fprintf(stderr, "psktunctl: psktund closed the connection without an answer\n");
		free(out);
		return 1;
	}
	if (!strcmp(cmd, "metrics")) {
		r = print_metrics(out);
	} else {
		fputs(out, stdout);
		r = 0;
	}
	free(out);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "psktunctl: cannot write the answer: %s\n", strerror(errno));
		return 1;
	}
	return r;
}

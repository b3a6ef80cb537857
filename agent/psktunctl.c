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

/* key=value lines as Prometheus text: counters get _total, the rest are gauges. */
static void print_metrics(char *stats)
{
	for (char *line = strtok(stats, "\n"); line; line = strtok(NULL, "\n")) {
		char *eq = strchr(line, '=');
		bool gauge;

		if (!eq)
			continue;
		*eq = '\0';
		gauge = !strcmp(line, "sessions") || !strcmp(line, "handshaking") ||
			!strcmp(line, "resumable") || !strcmp(line, "resumable_bytes");
		printf("# TYPE psktun_%s%s %s\npsktun_%s%s %s\n", line, gauge ? "" : "_total",
		       gauge ? "gauge" : "counter", line, gauge ? "" : "_total", eq + 1);
	}
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
	if (!strcmp(cmd, "metrics"))
		print_metrics(out);
	else
		fputs(out, stdout);
	r = strncmp(out, "error=", 6) ? 0 : 1;
	free(out);
	return r;
}

/* psktunctl: asks a running psktund for stats, sessions or a reload over its control socket. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include "meters.h"

#define DEFAULT_SOCKET "/run/psktun/control"

static void usage(FILE *f)
{
	fprintf(f, "usage: psktunctl [-s SOCKET] stats | sessions | show [--dump] | reload | metrics\n"
		   "       psktunctl genkey IDENTITY\n"
		   "  -s SOCKET  the daemon's control socket (default: %s)\n", DEFAULT_SOCKET);
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

/* key=value lines as Prometheus text: counters get _total, the rest are gauges.
 * name.reason=n lines are one family: one TYPE line, then name_total{reason="..."}. */
static void print_metrics(char *stats)
{
	char family[128] = "";

	for (char *line = strtok(stats, "\n"); line; line = strtok(NULL, "\n")) {
		char *eq = strchr(line, '='), *dot;
		bool gauge;

		if (!eq)
			continue;
		*eq = '\0';
		dot = strchr(line, '.');
		if (dot) {
			*dot = '\0';
			if (strcmp(family, line))
				printf("# TYPE psktun_%s_total counter\n", line);
			snprintf(family, sizeof(family), "%s", line);
			printf("psktun_%s_total{reason=\"%s\"} %s\n", line, dot + 1, eq + 1);
			continue;
		}
		gauge = !strcmp(line, "sessions") || !strcmp(line, "handshaking") ||
			!strcmp(line, "resumable") || !strcmp(line, "resumable_bytes");
		printf("# TYPE psktun_%s%s %s\npsktun_%s%s %s\n", line, gauge ? "" : "_total",
		       gauge ? "gauge" : "counter", line, gauge ? "" : "_total", eq + 1);
	}
}

/* ------------------------------------------------------------ show */

static const struct {
	const char *slug, *text[2];	/* terminator, gateway */
} failures[] = {
#define X(slug, t, g) { #slug, { t, g } },
	PSKTUN_FAILURES(X)
#undef X
};

static const char *failure_text(const char *slug, bool gateway)
{
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++)
		if (!strcmp(failures[i].slug, slug))
			return failures[i].text[gateway];
	return slug;
}

/* "5 s", "3 min", "2 h", "4 d" ago */
static const char *human_age(const char *secs, char *buf, size_t len)
{
	unsigned long long s = strtoull(secs, NULL, 10);

	if (s < 120)
		snprintf(buf, len, "%llu s", s);
	else if (s < 7200)
		snprintf(buf, len, "%llu min", s / 60);
	else if (s < 172800)
		snprintf(buf, len, "%llu h", s / 3600);
	else
		snprintf(buf, len, "%llu d", s / 86400);
	return buf;
}

static const char *human_bytes(const char *bytes, char *buf, size_t len)
{
	double b = strtod(bytes, NULL);
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB" };
	int u = -1;

	if (b < 1024) {
		snprintf(buf, len, "%s B", bytes);
		return buf;
	}
	while (b >= 1024 && u < 3) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", b, unit[u]);
	return buf;
}

static const char *plural(const char *n, const char *one, const char *many)
{
	return strcmp(n, "1") ? many : one;
}

#define SHOW_FIELDS 21

static size_t split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;

	for (char *p = line; n < max; ) {
		f[n++] = p;
		p = strchr(p, '\t');
		if (!p)
			break;
		*p++ = '\0';
	}
	return n;
}

/*
 * The daemon's dump (see psktunctl(8)), one line a meter for a person:
 *   meter-0001: established, peer 127.0.0.1:40000, seen 2 s ago, handshake 2 s ago (full),
 *     air in 412 B/6 out 398 B/5, plain in 5 B/1 out 5 B/1, 1 handshake, 0 failures
 * (on one line).
 */
static void print_show(char *dump)
{
	bool gateway = false, unknown_head = false;
	char a[32], b[32], c[32], e[32];

	for (char *line = strtok(dump, "\n"); line; line = strtok(NULL, "\n")) {
		char *f[SHOW_FIELDS];
		size_t n = split_tabs(line, f, SHOW_FIELDS);

		if (!strcmp(f[0], "tunnel") && n >= 6) {
			gateway = !strcmp(f[2], "gateway");
			unknown_head = false;
			printf("tunnel %s: %s, accept %s, connect %s, %s session%s\n", f[1], f[2], f[3],
			       f[4], f[5], plural(f[5], "", "s"));
		} else if (!strcmp(f[0], "meter") && n >= 21) {
			printf("  %s: ", f[2]);
			if (!strcmp(f[3], "never-seen")) {
				printf("never seen\n");
				continue;
			}
			printf("%s", !strcmp(f[3], "no-session") ? "no session" : f[3]);
			if (strcmp(f[4], "-"))
				printf(", peer %s", f[4]);
			if (strcmp(f[5], "-"))
				printf(", seen %s ago", human_age(f[5], a, sizeof(a)));
			if (strcmp(f[6], "-"))
				printf(", handshake %s ago (%s)", human_age(f[6], a, sizeof(a)), f[7]);
			else
				printf(", no handshake");
			printf(", air in %s/%s out %s/%s", human_bytes(f[8], a, sizeof(a)), f[9],
			       human_bytes(f[10], b, sizeof(b)), f[11]);
			printf(", plain in %s/%s out %s/%s", human_bytes(f[12], c, sizeof(c)), f[13],
			       human_bytes(f[14], e, sizeof(e)), f[15]);
			printf(", %s handshake%s, %s failure%s", f[16], plural(f[16], "", "s"), f[17],
			       plural(f[17], "", "s"));
			if (strcmp(f[18], "-")) {
				printf(", last %s ago: %s", human_age(f[19], a, sizeof(a)),
				       failure_text(f[18], gateway));
				if (strcmp(f[20], "-"))
					printf(" (%s)", f[20]);
			}
			printf("\n");
		} else if (!strcmp(f[0], "unknown") && n >= 7) {
			if (!unknown_head)
				printf("  recently unknown:\n");
			unknown_head = true;
			if (!strcmp(f[2], "identity"))
				printf("    identity %s from %s", f[3], f[4]);
			else
				printf("    source %s", f[4]);
			printf(": %s time%s, last %s ago\n", f[5], plural(f[5], "", "s"),
			       human_age(f[6], a, sizeof(a)));
		}
	}
}

static int genkey(const char *identity)
{
	unsigned char key[16];

	if (!*identity || strchr(identity, ':') || strchr(identity, '\n')) {
		fprintf(stderr, "psktunctl: an identity must be non-empty and contain no ':' or newline\n");
		return 2;
	}
	if (gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)) < 0) {
		fprintf(stderr, "psktunctl: GnuTLS's random generator failed\n");
		return 1;
	}
	printf("%s:", identity);
	for (size_t i = 0; i < sizeof(key); i++)
		printf("%02x", key[i]);
	printf("\n");
	gnutls_memset(key, 0, sizeof(key));
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET, *cmd;
	char *out = NULL;
	bool dump = false;
	int opt, r;

	while ((opt = getopt(argc, argv, "+s:h")) != -1) {
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
	if (!strcmp(cmd, "genkey")) {
		if (optind + 2 != argc) {
			usage(stderr);
			return 2;
		}
		return genkey(argv[optind + 1]);
	}
	if (!strcmp(cmd, "show") && optind + 2 == argc && !strcmp(argv[optind + 1], "--dump")) {
		dump = true;
	} else if (optind + 1 != argc || (strcmp(cmd, "stats") && strcmp(cmd, "sessions") &&
					  strcmp(cmd, "show") && strcmp(cmd, "reload") &&
					  strcmp(cmd, "metrics"))) {
		usage(stderr);
		return 2;
	}
	r = ask(path, !strcmp(cmd, "metrics") ? "stats" : cmd, &out);
	if (r < 0) {
		fprintf(stderr, "psktunctl: cannot talk to psktund at %s: %s (is it running, with control = \"%s\"?)\n",
			path, strerror(-r), path);
		return 1;
	}
	r = strncmp(out, "error=", 6) ? 0 : 1;
	if (!strcmp(cmd, "metrics"))
		print_metrics(out);
	else if (!strcmp(cmd, "show") && !dump && !r)
		print_show(out);
	else
		fputs(out, stdout);
	free(out);
	return r;
}

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
#include "meters.h"

#define DEFAULT_SOCKET "/run/psktun/control"

static void usage(FILE *f)
{
	fprintf(f, "usage: psktunctl [-s SOCKET] stats | sessions | show [--dump] | reload | metrics\n"
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

/* A stats line: NAME=DIGITS, NAME from [a-z0-9_] (a valid metric name once prefixed),
 * or FAMILY.REASON=DIGITS (a labelled sample: psktun_FAMILY_total{reason="REASON"}). */
static bool stat_line(const char *line, size_t len)
{
	size_t i = 0, eq;
	bool dot = false;

	while (i < len && ((line[i] >= 'a' && line[i] <= 'z') || (line[i] >= '0' && line[i] <= '9') ||
			   line[i] == '_' || (line[i] == '.' && !dot && i > 0))) {
		dot |= line[i] == '.';
		i++;
	}
	if (dot && line[i - 1] == '.')
		return false;
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
		"sessions", "handshaking", "resumable", "resumable_bytes", "queued_bytes", "cache_up",
		"io_uring",
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
	for (const char *p = stats, *eq, *nl, *dot, *family = NULL; *p; p = nl + 1) {
		int len;
		bool gauge;

		eq = strchr(p, '=');
		nl = strchr(p, '\n');
		len = (int)(eq - p);
		dot = memchr(p, '.', (size_t)len);
		if (dot) {	/* one family: one TYPE line, then each reason's sample */
			int flen = (int)(dot - p);

			if (!family || strncmp(family, p, flen + 1))
				fprintf(f, "# TYPE psktun_%.*s_total counter\n", flen, p);
			family = p;
			fprintf(f, "psktun_%.*s_total{reason=\"%.*s\"} %.*s\n", flen, p, (int)(eq - dot - 1),
				dot + 1, (int)(nl - eq - 1), eq + 1);
			continue;
		}
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
 * The shared session cache, before the tunnels:
 *   session cache: Redis at 127.0.0.1:6379 down for 12 s (Connection refused), next try in 1.6 s;
 *     hits 3, misses 1, timeouts 0, overflow 0, stores 40, errors 2
 * (on one line).
 */
static void print_cache(char **f)
{
	char a[32];

	printf("session cache: Redis at %s ", f[1]);
	if (!strcmp(f[2], "up"))
		printf("up for %s", human_age(f[3], a, sizeof(a)));
	else if (!strcmp(f[2], "connecting"))
		printf("connecting for %s", human_age(f[3], a, sizeof(a)));
	else
		printf("down for %s", human_age(f[3], a, sizeof(a)));
	if (strcmp(f[5], "-"))
		printf(" (%s)", f[5]);
	if (!strcmp(f[2], "reconnecting"))
		printf(", reconnecting");
	else if (strcmp(f[4], "-"))
		printf(", next try in %.1f s", strtoull(f[4], NULL, 10) / 1000.0);
	if (strcmp(f[7], "1"))
		printf(", %s of %s workers connected", f[6], f[7]);
	printf("; hits %s, misses %s, timeouts %s, overflow %s, stores %s, errors %s\n", f[8], f[9], f[10],
	       f[11], f[12], f[13]);
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

		if (!strcmp(f[0], "cache") && n >= 14) {
			print_cache(f);
		} else if (!strcmp(f[0], "tunnel") && n >= 6) {
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

int main(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET, *cmd;
	char *out = NULL;
	bool dump = false;
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
	} else if (!strcmp(cmd, "show") && !dump) {
		print_show(out);
		r = 0;
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

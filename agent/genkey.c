/* genkey: psktunctl's key maker: new "identity:hexkey" lines for a fleet, to stdout or into a key file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>

#include "genkey.h"

#define KEY_BYTES 16		/* random bytes in a key: 128 bits */
#define ASCII_CHARS 22		/* an --ascii key: 22 of 64 symbols, 132 bits */
#define IDENTITY_MAX 128	/* psktund's PSKTUN_IDENTITY_MAX */

struct idlist {
	char **v;
	size_t n, cap;
};

static void genkey_usage(FILE *f)
{
	fprintf(f, "usage: psktunctl genkey [-a] [-o FILE] IDENTITY... | - | -p PREFIX -n COUNT [-F FIRST] [-w WIDTH]\n"
		   "  IDENTITY...   one key each; '-' reads identities from stdin, one a line\n"
		   "  -p PREFIX -n COUNT  COUNT identities PREFIX0001, PREFIX0002, ...\n"
		   "  -F FIRST      the first number (default 1)\n"
		   "  -w WIDTH      digits, zero-padded (default 4)\n"
		   "  -o FILE       append to the key file FILE instead of printing; a new FILE\n"
		   "                is created 0600, an existing one keeps its mode, and an\n"
		   "                identity it already holds is refused\n"
		   "  -a            a printable key (22 characters of A-Z a-z 0-9 - _) for tools\n"
		   "                that take the key as text (libcoap's coap-client -k)\n");
}

static int idlist_add(struct idlist *l, const char *s, size_t len)
{
	char *copy;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	copy = strndup(s, len);
	if (!copy)
		return -ENOMEM;
	l->v[l->n++] = copy;
	return 0;
}

static void idlist_free(struct idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Calls fn for each non-blank, non-comment line of buf, trimmed as psktund trims key file lines. */
static int each_line(const char *buf, size_t len, int (*fn)(void *, const char *, size_t), void *arg)
{
	size_t pos = 0;
	int r;

	while (pos < len) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos, skip = 0;

		pos += n + 1;
		while (n > 0 && is_blank(s[n - 1]))
			n--;
		while (skip < n && is_blank(s[skip]))
			skip++;
		if (skip == n || s[skip] == '#')
			continue;
		r = fn(arg, s + skip, n - skip);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_stdin_line(void *arg, const char *s, size_t n)
{
	return idlist_add(arg, s, n);
}

/* A key file line's identity: what comes before the first ':'. */
static int add_file_identity(void *arg, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);

	return idlist_add(arg, s, colon ? (size_t)(colon - s) : n);
}

static int read_all(int fd, char **out, size_t *outlen)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	while ((n = read(fd, buf + len, cap - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			n = -errno;
			free(buf);
			return (int)n;
		}
		len += (size_t)n;
		if (len == cap) {
			char *p = realloc(buf, cap * 2);

			if (!p) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
			cap *= 2;
		}
	}
	*out = buf;
	*outlen = len;
	return 0;
}

/* psktund's rules for an identity, plus what a line-based file cannot hold. */
static const char *identity_problem(const char *id)
{
	size_t len = strlen(id);

	if (!len)
		return "is empty";
	if (len > IDENTITY_MAX)
		return "is longer than 128 bytes";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
			return "contains a control character";
	if (strchr(id, ':'))
		return "contains ':'";
	if (is_blank(id[0]) || id[0] == '#' || is_blank(id[len - 1]))
		return "starts with '#' or starts or ends with a blank";
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Each identity valid, once, none of them in `have` (sorted). Reports every
 * problem; returns 0, 2 when an identity is malformed (a usage error), or 1.
 */
static int check_identities(const struct idlist *want, const struct idlist *have, const char *file)
{
	struct idlist sorted = *want;
	size_t bad = 0, malformed = 0;

	for (size_t i = 0; i < want->n; i++) {
		const char *why = identity_problem(want->v[i]);

		if (why) {
			/* a control character is not echoed to the terminal */
			fprintf(stderr, "psktunctl: identity '%s' %s (an identity is 1 to 128 bytes, "
				"no ':' and no control character)\n",
				strstr(why, "control") ? "..." : want->v[i], why);
			malformed++;
		} else if (have->n && bsearch(&want->v[i], have->v, have->n, sizeof(char *), cmp_str)) {
			fprintf(stderr, "psktunctl: %s already has a key for '%s'\n", file, want->v[i]);
			bad++;
		}
	}
	sorted.v = malloc((want->n ? want->n : 1) * sizeof(char *));
	if (!sorted.v) {
		fprintf(stderr, "psktunctl: out of memory\n");
		return 1;
	}
	memcpy(sorted.v, want->v, want->n * sizeof(char *));
	qsort(sorted.v, want->n, sizeof(char *), cmp_str);
	for (size_t i = 1; i < want->n; i++)
		if (!strcmp(sorted.v[i - 1], sorted.v[i]) && (i < 2 || strcmp(sorted.v[i - 2], sorted.v[i]))) {
			fprintf(stderr, "psktunctl: identity '%s' is asked for more than once\n", sorted.v[i]);
			bad++;
		}
	free(sorted.v);
	return malformed ? 2 : bad ? 1 : 0;
}

/* One "identity:hexkey\n" line per identity, in a buffer the caller zeroes and frees. */
static int make_lines(const struct idlist *ids, bool ascii, char **out, size_t *outlen)
{
	static const char symbols[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t per = 2 * (ascii ? ASCII_CHARS : KEY_BYTES) + 2, cap = 0, len = 0;
	unsigned char key[ASCII_CHARS];
	char *buf;

	for (size_t i = 0; i < ids->n; i++)
		cap += strlen(ids->v[i]) + per;
	buf = malloc(cap + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < ids->n; i++) {
		size_t klen = ascii ? ASCII_CHARS : KEY_BYTES;

		if (gnutls_rnd(GNUTLS_RND_KEY, key, klen) < 0) {
			gnutls_memset(buf, 0, cap + 1);
			free(buf);
			gnutls_memset(key, 0, sizeof(key));
			return -EIO;
		}
		if (ascii)	/* 256 is a multiple of 64: each symbol equally likely */
			for (size_t j = 0; j < klen; j++)
				key[j] = (unsigned char)symbols[key[j] & 63];
		len += (size_t)sprintf(buf + len, "%s:", ids->v[i]);
		for (size_t j = 0; j < klen; j++)
			len += (size_t)sprintf(buf + len, "%02x", key[j]);
		buf[len++] = '\n';
	}
	gnutls_memset(key, 0, sizeof(key));
	*out = buf;
	*outlen = len;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Opens FILE for appending: created 0600 if it is not there (O_EXCL: never
 * someone else's file that appeared meanwhile), else as it is, with its mode
 * untouched; a mode psktund would refuse is refused here too, before a key
 * goes into a file others can read. Locked, so two runs do not interleave.
 */
static int open_key_file(const char *file, bool *created)
{
	struct stat st;
	int fd;

	*created = false;
	fd = open(file, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		*created = true;
	else if (errno == EEXIST)
		fd = open(file, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "psktunctl: cannot open %s: %s\n", file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "psktunctl: %s is not a regular file\n", file);
		close(fd);
		return -1;
	}
	if (st.st_mode & (S_IWGRP | S_IRWXO)) {
		fprintf(stderr, "psktunctl: %s is group-writable or open to others (mode %04o), "
			"which psktund refuses; run chmod 600 %s first (no key was written)\n",
			file, (unsigned)(st.st_mode & 07777), file);
		close(fd);
		return -1;
	}
	if (flock(fd, LOCK_EX) < 0) {
		fprintf(stderr, "psktunctl: cannot lock %s: %s\n", file, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The identities in the order given: arguments, stdin's lines where '-' stands, then PREFIX's. */
static int collect(int argc, char **argv, struct idlist *ids, const char *prefix, long count,
		   long first, int width)
{
	bool stdin_read = false;

	for (int i = 0; i < argc; i++) {
		char *buf;
		size_t len;
		int r;

		if (strcmp(argv[i], "-")) {
			if (idlist_add(ids, argv[i], strlen(argv[i])) < 0)
				return -ENOMEM;
			continue;
		}
		if (stdin_read)
			continue;
		stdin_read = true;
		r = read_all(STDIN_FILENO, &buf, &len);
		if (r < 0)
			return r;
		r = each_line(buf, len, add_stdin_line, ids);
		free(buf);
		if (r < 0)
			return r;
	}
	for (long i = 0; prefix && i < count; i++) {
		char id[IDENTITY_MAX + 32];
		int n = snprintf(id, sizeof(id), "%s%0*ld", prefix, width, first + i);

		if (n < 0 || (size_t)n >= sizeof(id)) {
			fprintf(stderr, "psktunctl: -p PREFIX is too long\n");
			return -EINVAL;
		}
		if (idlist_add(ids, id, (size_t)n) < 0)
			return -ENOMEM;
	}
	return 0;
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int psktunctl_genkey(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "count", required_argument, NULL, 'n' },
		{ "first", required_argument, NULL, 'F' },
		{ "width", required_argument, NULL, 'w' },
		{ "ascii", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *file = NULL, *prefix = NULL;
	long count = -1, first = 1, width = 4;
	struct idlist ids = { 0 }, have = { 0 };
	bool ascii = false, created = false;
	char *lines = NULL, *old = NULL;
	size_t len = 0, oldlen = 0;
	int opt, fd = -1, rc = 1, r;

	optind = 0;	/* a fresh getopt over genkey's own arguments (argv[0] is "genkey") */
	while ((opt = getopt_long(argc, argv, "+o:p:n:F:w:ah", longopts, NULL)) != -1) {
		switch (opt) {
		case 'o': file = optarg; break;
		case 'p': prefix = optarg; break;
		case 'n':
			if (!parse_long(optarg, 1, 1000000, &count))
				goto usage;
			break;
		case 'F':
			if (!parse_long(optarg, 0, 999999999, &first))
				goto usage;
			break;
		case 'w':
			if (!parse_long(optarg, 1, 9, &width))
				goto usage;
			break;
		case 'a': ascii = true; break;
		case 'h': genkey_usage(stdout); return 0;
		default: goto usage;
		}
	}
	if (!prefix != (count < 0) || (optind == argc && !prefix))
		goto usage;
	r = collect(argc - optind, argv + optind, &ids, prefix, count, first, (int)width);
	if (r < 0) {
		if (r != -EINVAL)
			fprintf(stderr, "psktunctl: reading identities: %s\n", strerror(-r));
		goto out;
	}
	if (!ids.n) {
		fprintf(stderr, "psktunctl: no identity given (stdin was empty)\n");
		goto out;
	}
	if (file) {
		fd = open_key_file(file, &created);
		if (fd < 0)
			goto out;
		r = read_all(fd, &old, &oldlen);
		if (r >= 0)
			r = each_line(old, oldlen, add_file_identity, &have);
		if (r < 0) {
			fprintf(stderr, "psktunctl: reading %s: %s\n", file, strerror(-r));
			goto out;
		}
		if (have.n)	/* a new file: no array at all, and qsort's must not be NULL */
			qsort(have.v, have.n, sizeof(char *), cmp_str);
	}
	r = check_identities(&ids, &have, file ? file : "");
	if (r) {
		fprintf(stderr, "psktunctl: no key was made\n");
		rc = r;
		goto out;
	}
	r = make_lines(&ids, ascii, &lines, &len);
	if (r < 0) {
		fprintf(stderr, "psktunctl: %s\n", r == -EIO ? "GnuTLS's random generator failed" : strerror(-r));
		goto out;
	}
	if (!file) {
		r = write_all(STDOUT_FILENO, lines, len);
		if (r < 0)
			fprintf(stderr, "psktunctl: writing the keys: %s\n", strerror(-r));
		rc = r < 0;
		goto out;
	}
	/* A last line without its newline would swallow our first identity. */
	r = oldlen && old[oldlen - 1] != '\n' ? write_all(fd, "\n", 1) : 0;
	if (r >= 0)
		r = write_all(fd, lines, len);
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0) {
		fprintf(stderr, "psktunctl: writing %s: %s (check its last lines)\n", file, strerror(-r));
		goto out;
	}
	fprintf(stderr, "psktunctl: %s %zu key%s to %s\n", created ? "wrote" : "added", ids.n,
		ids.n == 1 ? "" : "s", file);
	rc = 0;
out:
	if (lines) {
		gnutls_memset(lines, 0, len);
		free(lines);
	}
	if (old) {
		gnutls_memset(old, 0, oldlen);
		free(old);
	}
	if (fd >= 0)
		close(fd);
	/* Nothing written to a file we made: leave no empty key file behind. */
	if (created && rc)
		unlink(file);
	idlist_free(&ids);
	idlist_free(&have);
	return rc;
usage:
	genkey_usage(stderr);
	idlist_free(&ids);
	return 2;
}

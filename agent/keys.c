/* keys: loads the psktool-format key file into a sorted, zeroed-on-free key store. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "keys.h"
#include "secmem.h"

#define KEYS_FILE_MAX (64u << 20)	/* far beyond any real deployment */
/* One read() at most: the kernel copies a read without a break, and a 55 MiB
 * key file (a million meters) in one read held a CPU for 30 ms and more, in
 * front of the event loops, whatever the reading thread's priority. */
#define KEYS_READ_CHUNK (256u << 10)

void psktun_keys_free(struct psktun_keys *k)
{
	if (!k)
		return;
	free(k->v);
	free(k->names);
	psktun_secmem_free(k->secret, k->secret_cap);	/* zeroes every key */
	free(k);
}

void psktun_keys_relock(const struct psktun_keys *k)
{
	if (k)
		psktun_secmem_relock(k->secret, k->secret_cap);
}

/* Reads the whole file; the buffer holds keys, so it is zeroed before every free. */
static int read_all(int fd, size_t hint, char **out, size_t *outlen)
{
	size_t cap = hint + 1, len = 0;
	char *buf = malloc(cap), *bigger;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap >= KEYS_FILE_MAX) {
				explicit_bzero(buf, len);
				free(buf);
				return -EFBIG;
			}
			bigger = malloc(cap * 2);
			if (!bigger) {
				explicit_bzero(buf, len);
				free(buf);
				return -ENOMEM;
			}
			memcpy(bigger, buf, len);
			explicit_bzero(buf, len);
			free(buf);
			buf = bigger;
			cap *= 2;
		}
		got = read(fd, buf + len, cap - len < KEYS_READ_CHUNK ? cap - len : KEYS_READ_CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int r = -errno;

			explicit_bzero(buf, len);
			free(buf);
			return r;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	*out = buf;
	*outlen = len;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return (alen > blen) - (alen < blen);
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct psktun_key *a = pa, *b = pb;
	int c = key_cmp(a->identity, a->identity_len, b->identity, b->identity_len);

	/* Ties by line, so the first of a run of duplicates is the earliest. */
	return c ? c : (a->line > b->line) - (a->line < b->line);
}

static int add_entry(struct psktun_keys *k, size_t *cap, const char *id, size_t idlen,
		     const char *hex, size_t keylen, int line)
{
	struct psktun_key *e;

	if (k->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct psktun_key *v = realloc(k->v, ncap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->v = v;
		*cap = ncap;
	}
	e = &k->v[k->n];
	memset(e, 0, sizeof(*e));
	if (k->secret_cap - k->secret_len < keylen)	/* cannot happen: sized by the file */
		return -ENOMEM;
	if (k->names_cap - k->names_len < idlen + 1) {
		size_t ncap = k->names_cap ? k->names_cap * 2 : 4096;
		char *names;

		while (ncap - k->names_len < idlen + 1)
			ncap *= 2;
		names = realloc(k->names, ncap);
		if (!names)
			return -ENOMEM;
		k->names = names;
		k->names_cap = ncap;
	}
	/* names may move while the file is read: the offset until parse() ends */
	e->identity = (char *)(uintptr_t)k->names_len;
	memcpy(k->names + k->names_len, id, idlen);
	k->names[k->names_len + idlen] = '\0';
	k->names_len += idlen + 1;
	e->key = k->secret + k->secret_len;
	k->secret_len += keylen;
	e->identity_len = idlen;
	e->key_len = keylen;
	e->line = line;
	for (size_t i = 0; i < keylen; i++)
		e->key[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
	k->n++;
	return 0;
}

/* Checks one "identity:hexkey" line; on success adds it. Never quotes the key. */
static int parse_line(struct psktun_keys *k, size_t *cap, const char *path, int lineno,
		      const char *s, size_t len, struct psktun_diag *diag)
{
	const char *colon = memchr(s, ':', len), *hex;
	size_t idlen, hexlen;

	if (!colon) {
		psktun_diag_add(diag, path, lineno, "missing ':' between identity and key");
		return -EINVAL;
	}
	idlen = (size_t)(colon - s);
	hex = colon + 1;
	hexlen = len - idlen - 1;
	if (idlen == 0) {
		psktun_diag_add(diag, path, lineno, "empty identity");
		return -EINVAL;
	}
	if (idlen > PSKTUN_IDENTITY_MAX) {
		psktun_diag_add(diag, path, lineno, "identity is longer than %d bytes",
				PSKTUN_IDENTITY_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < idlen; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			psktun_diag_add(diag, path, lineno, "identity contains a control character");
			return -EINVAL;
		}
	}
	if (hexlen == 0) {
		psktun_diag_add(diag, path, lineno, "empty key for '%.*s'", (int)idlen, s);
		return -EINVAL;
	}
	for (size_t i = 0; i < hexlen; i++) {
		if (hexval(hex[i]) < 0) {
			psktun_diag_add(diag, path, lineno, "key for '%.*s' is not hexadecimal",
					(int)idlen, s);
			return -EINVAL;
		}
	}
	if (hexlen % 2) {
		psktun_diag_add(diag, path, lineno, "key for '%.*s' has an odd number of hex digits",
				(int)idlen, s);
		return -EINVAL;
	}
	if (hexlen / 2 < PSKTUN_KEY_MIN) {
		psktun_diag_add(diag, path, lineno, "key for '%.*s' is %zu byte%s; at least %d are required",
				(int)idlen, s, hexlen / 2, hexlen == 2 ? "" : "s", PSKTUN_KEY_MIN);
		return -EINVAL;
	}
	if (hexlen / 2 > PSKTUN_KEY_MAX) {
		psktun_diag_add(diag, path, lineno, "key for '%.*s' is %zu bytes; at most %d are allowed",
				(int)idlen, s, hexlen / 2, PSKTUN_KEY_MAX);
		return -EINVAL;
	}
	if (add_entry(k, cap, s, idlen, hex, hexlen / 2, lineno) < 0) {
		psktun_diag_add(diag, path, lineno, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int parse(struct psktun_keys *k, const char *path, const char *buf, size_t len,
		 struct psktun_diag *diag)
{
	size_t cap = 0, pos = 0;
	int lineno = 0, r = 0, e;

	while (pos < len) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos, skip = 0;

		pos += n + 1;
		lineno++;
		while (n > 0 && is_blank(s[n - 1]))
			n--;
		while (skip < n && is_blank(s[skip]))
			skip++;
		if (skip == n || s[skip] == '#')
			continue;
		e = parse_line(k, &cap, path, lineno, s, n, diag);
		if (e == -ENOMEM)
			return e;
		if (e < 0)
			r = e;
	}
	if (k->names_len && k->names_len < k->names_cap) {	/* what doubling left over */
		char *names = realloc(k->names, k->names_len);

		if (names) {
			k->names = names;
			k->names_cap = k->names_len;
		}
	}
	for (size_t i = 0; i < k->n; i++)
		k->v[i].identity = k->names + (uintptr_t)k->v[i].identity;
	if (k->n > 1)
		qsort(k->v, k->n, sizeof(k->v[0]), entry_cmp);
	for (size_t i = 1, first = 0; i < k->n; i++) {
		if (key_cmp(k->v[first].identity, k->v[first].identity_len,
			    k->v[i].identity, k->v[i].identity_len) != 0) {
			first = i;
			continue;
		}
		psktun_diag_add(diag, path, k->v[i].line, "duplicate identity '%s' (first at line %d)",
				k->v[i].identity, k->v[first].line);
		r = -EINVAL;
	}
	return r;
}

int psktun_keys_load(const char *path, bool check_mode, struct psktun_keys **out,
		     struct psktun_diag *diag)
{
	struct psktun_keys *k = NULL;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd, r;

	*out = NULL;
	fd = psktun_file_open(path, &st);
	if (fd == -EINVAL) {
		psktun_diag_add(diag, path, 0, "key file is not a regular file (it is %s)",
				psktun_file_kind(st.st_mode));
		return fd;
	}
	if (fd < 0) {
		psktun_diag_add(diag, path, 0, "cannot open key file: %s", strerror(-fd));
		return fd;
	}
	if (check_mode && (st.st_mode & (S_IWGRP | S_IRWXO))) {
		r = -EPERM;
		psktun_diag_add(diag, path, 0,
				"key file is group-writable or open to others (mode %04o); run chmod 600 %s (or chmod 640 to share it with a trusted group)",
				(unsigned)(st.st_mode & 07777), path);
		goto out_close;
	}
	r = read_all(fd, st.st_size > 0 && st.st_size < KEYS_FILE_MAX ? (size_t)st.st_size : 4096,
		     &buf, &len);
	if (r < 0) {
		psktun_diag_add(diag, path, 0, "cannot read key file: %s", strerror(-r));
		goto out_close;
	}
	k = calloc(1, sizeof(*k));
	/* Two hex digits a key byte: half the file holds every key. */
	if (k && len / 2) {
		k->secret_cap = len / 2;
		k->secret = psktun_secmem_alloc(k->secret_cap);
		if (!k->secret) {
			free(k);
			k = NULL;
		}
	}
	if (!k) {
		r = -ENOMEM;
		psktun_diag_add(diag, path, 0, "out of memory for the key store");
		goto out_buf;
	}
	r = parse(k, path, buf, len, diag);
	if (r < 0) {
		psktun_keys_free(k);
		k = NULL;
	}
out_buf:
	explicit_bzero(buf, len);
	free(buf);
out_close:
	close(fd);
	*out = k;
	return r;
}

const struct psktun_key *psktun_keys_find(const struct psktun_keys *k, const char *identity, size_t len)
{
	size_t lo = 0, hi;

	if (!k)
		return NULL;
	hi = k->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(identity, len, k->v[mid].identity, k->v[mid].identity_len);

		if (c == 0)
			return &k->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int psktun_keys_changed(const struct psktun_keys *old, const struct psktun_keys *now,
			struct psktun_key_change **out, size_t *n)
{
	struct psktun_key_change *v = NULL, *bigger;
	size_t i = 0, j = 0, cap = 0, len = 0;

	*out = NULL;
	*n = 0;
	if (!old)
		return 0;
	while (i < old->n) {
		const struct psktun_key *a = &old->v[i], *b = now && j < now->n ? &now->v[j] : NULL;
		int c = b ? key_cmp(a->identity, a->identity_len, b->identity, b->identity_len) : -1;

		if (c > 0) {		/* new in `now`: nothing of it runs yet */
			j++;
			continue;
		}
		i++;
		if (c == 0) {
			j++;
			if (a->key_len == b->key_len && !memcmp(a->key, b->key, a->key_len))
				continue;
		}
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			bigger = realloc(v, cap * sizeof(*v));
			if (!bigger) {
				free(v);
				return -ENOMEM;
			}
			v = bigger;
		}
		v[len].old = a;
		v[len].removed = c != 0;
		len++;
	}
	*out = v;
	*n = len;
	return 0;
}

const struct psktun_key_change *psktun_keys_change_find(const struct psktun_key_change *v, size_t n,
							const char *identity, size_t len)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(identity, len, v[mid].old->identity, v[mid].old->identity_len);

		if (c == 0)
			return &v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

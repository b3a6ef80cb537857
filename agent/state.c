/* state: `state_file`, the resumption state a restart keeps: the terminator's session cache, each meter's data on a gateway. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include "daemon.h"
#include "seal.h"
#include "dtls.h"
#include "servercache.h"
#include "session.h"
#include "state.h"
#include "tunnel.h"
#include "file.h"
#include "log.h"

/*
 * The file: a header, then the entries, then (sealed) the GCM tag or (not
 * sealed) a CRC-32 of header and entries. All numbers big-endian.
 *
 *   header   magic "psktunST" | version u16 | role u8 | sealed u8 |
 *            written_at u64 (wall clock, s) | count u32 | body_len u32
 *   sealed   nonce (12) | entries encrypted (body_len) | tag (16); the header is the AAD
 *   plain    entries (body_len) | crc32 u32 of header and entries
 *   entry    tunnel_len u8 | key_len u8 | identity_len u8 | 0 u8 | data_len u16 |
 *            expires_at u64 (wall clock, s) | key digest (16) | tunnel | key | identity | data
 *
 * The entries hold master secrets: the file is 0600, written to a temporary
 * file and renamed, and sealed with the cache key when there is one. Whoever
 * can write an unsealed file can plant a session and resume as any meter, so
 * one that is not ours or that others may write is not read.
 */
#define MAGIC "psktunST"
#define FORMAT_VERSION 1
#define HDR_LEN (8 + 2 + 1 + 1 + 8 + 4 + 4)
#define ENTRY_HDR (1 + 1 + 1 + 1 + 2 + 8 + PSKTUN_RESUME_DIGEST_LEN)
#define ENTRY_MAX (ENTRY_HDR + 3 * 255 + UINT16_MAX)
#define FILE_MAX ((uint64_t)1 << 30)

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void buf_put(struct buf *b, const void *data, size_t len)
{
	if (b->oom || !len)
		return;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;

		while (cap < b->len + len)
			cap *= 2;
		/* grown by hand: realloc would leave the old copy, secrets and all, unzeroed */
		p = malloc(cap);
		if (!p) {
			b->oom = true;
			return;
		}
		if (b->p) {
			memcpy(p, b->p, b->len);
			gnutls_memset(b->p, 0, b->cap);
			free(b->p);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_free(struct buf *b)
{
	if (b->p) {
		gnutls_memset(b->p, 0, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof(*b));
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

struct saving {
	struct buf body;
	const char *tunnel;
	uint64_t now_s, wall;
	uint32_t count;
};

static void save_entry(void *arg, const struct resume_view *v)
{
	struct saving *sv = arg;
	size_t tlen = sv->tunnel ? strlen(sv->tunnel) : 0;
	uint8_t h[ENTRY_HDR];

	if (v->expires_s <= sv->now_s || tlen > 255 || v->key_len > 255 || v->identity_len > 255)
		return;
	h[0] = (uint8_t)tlen;
	h[1] = (uint8_t)v->key_len;
	h[2] = (uint8_t)v->identity_len;
	h[3] = 0;
	put_be(h + 4, v->data_len, 2);
	put_be(h + 6, sv->wall + (v->expires_s - sv->now_s), 8);
	memcpy(h + 14, v->digest, PSKTUN_RESUME_DIGEST_LEN);
	buf_put(&sv->body, h, sizeof(h));
	buf_put(&sv->body, sv->tunnel, tlen);
	buf_put(&sv->body, v->key, v->key_len);
	buf_put(&sv->body, v->identity, v->identity_len);
	buf_put(&sv->body, v->data, v->data_len);
	sv->count++;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Temporary file beside it, then rename: a crash leaves the old file or the new, never half of one. */
static int write_file(const char *path, const uint8_t *data, size_t len)
{
	char tmp[4096];
	int fd, r;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = fchmod(fd, 0600) < 0 ? -errno : 0;	/* whatever the umask */
	if (r == 0)
		r = write_all(fd, data, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

void state_save(struct daemon *d)
{
	const char *path = d->cfg->state_file;
	struct saving sv = { .now_s = daemon_now_ms(d) / 1000, .wall = (uint64_t)time(NULL) };
	uint8_t hdr[HDR_LEN];
	struct buf out = { 0 };
	uint8_t crc[4];
	int r;

	if (!path)
		return;
	if (d->cfg->mode == PSKTUN_MODE_TERMINATOR) {
		dtls_server_cache_foreach(d, save_entry, &sv);
	} else {
		for (struct tunnel *t = d->tunnels; t; t = t->next) {
			sv.tunnel = t->conf.name;
			resume_foreach(&t->resume, save_entry, &sv);
		}
	}
	memcpy(hdr, MAGIC, 8);
	put_be(hdr + 8, FORMAT_VERSION, 2);
	hdr[10] = (uint8_t)d->cfg->mode;
	hdr[11] = d->cache_keys ? 1 : 0;
	put_be(hdr + 12, sv.wall, 8);
	put_be(hdr + 20, sv.count, 4);
	put_be(hdr + 24, sv.body.len, 4);
	buf_put(&out, hdr, sizeof(hdr));
	r = sv.body.oom || sv.body.len > UINT32_MAX ? -ENOMEM : 0;
	if (r == 0 && d->cache_keys) {
		uint8_t *sealed = malloc(sv.body.len + PSKTUN_SEAL_OVERHEAD);

		r = sealed ? psktun_seal(d->cache_keys->seal, hdr, sizeof(hdr), sv.body.p, sv.body.len, sealed)
			   : -ENOMEM;
		if (r == 0)
			buf_put(&out, sealed, sv.body.len + PSKTUN_SEAL_OVERHEAD);
		free(sealed);	/* ciphertext only */
	} else if (r == 0) {
		buf_put(&out, sv.body.p, sv.body.len);
		put_be(crc, psktun_crc32(psktun_crc32(0, hdr, sizeof(hdr)), sv.body.p, sv.body.len), 4);
		buf_put(&out, crc, sizeof(crc));
	}
	if (r == 0 && out.oom)
		r = -ENOMEM;
	if (r == 0)
		r = write_file(path, out.p, out.len);
	if (r < 0)
		log_err("state file %s: cannot write it: %s; the next start shakes hands in full", path,
			strerror(-r));
	else
		log_notice("state file %s: %u resumable session%s saved%s", path, sv.count,
			   sv.count == 1 ? "" : "s", d->cache_keys ? ", sealed" : "");
	buf_free(&sv.body);
	buf_free(&out);
}

static struct tunnel *tunnel_named(struct daemon *d, const uint8_t *name, size_t len)
{
	for (struct tunnel *t = d->tunnels; t; t = t->next)
		if (strlen(t->conf.name) == len && !memcmp(t->conf.name, name, len))
			return t;
	return NULL;
}

/* The entries of a checked body; -EBADMSG when one does not parse. Run once
 * to check (apply false), then to put them into the caches: all or nothing. */
static int load_entries(struct daemon *d, const uint8_t *p, size_t len, uint32_t count, bool apply,
			unsigned *restored, unsigned *expired)
{
	uint64_t now_s = daemon_now_ms(d) / 1000, wall = (uint64_t)time(NULL);
	bool terminator = d->cfg->mode == PSKTUN_MODE_TERMINATOR;

	for (uint32_t i = 0; i < count; i++) {
		struct resume_view v;
		size_t tlen, need;
		uint64_t at;
		struct tunnel *t = NULL;

		if (len < ENTRY_HDR)
			return -EBADMSG;
		tlen = p[0];
		v.key_len = p[1];
		v.identity_len = p[2];
		v.data_len = get_be(p + 4, 2);
		at = get_be(p + 6, 8);
		v.digest = p + 14;
		need = ENTRY_HDR + tlen + v.key_len + v.identity_len + v.data_len;
		if (len < need || p[3] || !v.key_len || !v.data_len || (terminator == (tlen != 0)))
			return -EBADMSG;
		v.key = p + ENTRY_HDR + tlen;
		v.identity = (const char *)v.key + v.key_len;
		v.data = (const uint8_t *)v.identity + v.identity_len;
		if (!terminator)
			t = tunnel_named(d, p + ENTRY_HDR, tlen);
		if (!apply) {
			/* checked only */
		} else if (at <= wall) {
			(*expired)++;
		} else if (terminator || t) {	/* a tunnel that is gone takes its meters' data along */
			v.expires_s = now_s + (at - wall < PSKTUN_RESUME_LIFETIME_S ? at - wall
										: PSKTUN_RESUME_LIFETIME_S);
			if ((terminator ? dtls_server_cache_put(d, &v) : resume_put_view(&t->resume, &v)) == 0)
				(*restored)++;
		}
		p += need;
		len -= need;
	}
	return len ? -EBADMSG : 0;
}

static int read_all(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Never fatal: a file that is missing, damaged, truncated, foreign (another
 * role, another key, another format) or stale is ignored with one line, and
 * the meters shake hands in full as they would without it.
 */
void state_load(struct daemon *d)
{
	const char *path = d->cfg->state_file;
	const char *why = NULL;
	unsigned restored = 0, expired = 0;
	uint8_t *file = NULL, *body = NULL;
	uint64_t written, wall = (uint64_t)time(NULL);
	uint32_t count, body_len;
	size_t size;
	struct stat st;
	char what[160];
	int fd, r;

	if (!path)
		return;
	fd = psktun_file_open(path, &st);
	if (fd == -ENOENT) {
		log_info("state file %s: none yet; every meter shakes hands in full", path);
		return;
	}
	if (fd == -EINVAL) {
		snprintf(what, sizeof(what), "it is %s, not a regular file", psktun_file_kind(st.st_mode));
		why = what;
		goto out;
	}
	if (fd < 0) {
		snprintf(what, sizeof(what), "cannot open it: %s", strerror(-fd));
		why = what;
		goto out;
	}
	size = (size_t)st.st_size;
	if (!d->cache_keys && (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
		snprintf(what, sizeof(what), "not sealed, it must be ours and written by us only "
			 "(owner %u, mode %04o)", (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		why = what;
		goto out;
	}
	if (st.st_size < HDR_LEN + 4 || (uint64_t)st.st_size > FILE_MAX) {
		why = "too short or too long to be a state file";
		goto out;
	}
	file = malloc(size);
	if (!file || (r = read_all(fd, file, size)) < 0) {
		why = file ? "cannot read it" : "out of memory";
		goto out;
	}
	if (memcmp(file, MAGIC, 8) || get_be(file + 8, 2) != FORMAT_VERSION) {
		why = "not a psktun state file of this version";
		goto out;
	}
	if (file[10] != (uint8_t)d->cfg->mode) {
		why = d->cfg->mode == PSKTUN_MODE_GATEWAY ? "a terminator's, not a gateway's"
							  : "a gateway's, not a terminator's";
		goto out;
	}
	written = get_be(file + 12, 8);
	count = (uint32_t)get_be(file + 20, 4);
	body_len = (uint32_t)get_be(file + 24, 4);
	if (file[11] > 1 || size != HDR_LEN + (uint64_t)body_len + (file[11] ? PSKTUN_SEAL_OVERHEAD : 4)) {
		why = "damaged or truncated (its length does not match its header)";
		goto out;
	}
	if (file[11] && !d->cache_keys) {
		why = "sealed, and session_cache.key_file is not set";
		goto out;
	}
	if (!file[11] && d->cache_keys) {
		why = "not sealed, and session_cache.key_file is set: only a sealed file is read";
		goto out;
	}
	if (file[11]) {
		body = malloc(body_len ? body_len : 1);
		if (!body) {
			why = "out of memory";
			goto out;
		}
		if (psktun_unseal(d->cache_keys->seal, file, HDR_LEN, file + HDR_LEN,
				  body_len + PSKTUN_SEAL_OVERHEAD, body) < 0) {
			why = "sealed with another key, or damaged";
			goto out;
		}
	} else if (psktun_crc32(0, file, HDR_LEN + body_len) != get_be(file + HDR_LEN + body_len, 4)) {
		why = "damaged (bad CRC)";
		goto out;
	}
	if (written > wall + 86400 || written + PSKTUN_RESUME_LIFETIME_S <= wall) {
		snprintf(what, sizeof(what), "stale (written %lld s ago)", (long long)(wall - written));
		why = what;
		goto out;
	}
	if (load_entries(d, body ? body : file + HDR_LEN, body_len, count, false, &restored, &expired) < 0) {
		why = "damaged (an entry does not parse)";
		goto out;
	}
	load_entries(d, body ? body : file + HDR_LEN, body_len, count, true, &restored, &expired);
	log_notice("state file %s: %u resumable session%s restored, %u expired", path, restored,
		   restored == 1 ? "" : "s", expired);
out:
	if (why)
		log_warn("state file %s: ignored: %s; every meter shakes hands in full", path, why);
	if (fd >= 0)
		close(fd);
	if (file) {
		gnutls_memset(file, 0, size);
		free(file);
	}
	if (body) {
		gnutls_memset(body, 0, body_len);
		free(body);
	}
}

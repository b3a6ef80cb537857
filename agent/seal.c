/* seal: hex key files, and sealing what leaves the process (state file, shared cache) with AEAD. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include "file.h"
#include "seal.h"

#define HEXKEY_MAX 64

int psktun_hexkey_load(const char *path, const char *what, uint8_t *out, size_t len,
		       struct psktun_diag *diag)
{
	uint8_t key[HEXKEY_MAX];
	size_t n = 0, hex = 0;
	char text[4 * HEXKEY_MAX], chunk[256];
	struct stat st;
	int fd;

	if (len > HEXKEY_MAX)
		return -EINVAL;
	fd = psktun_file_open(path, &st);
	if (fd == -EINVAL) {
		psktun_diag_add(diag, path, 0, "the %s file is not a regular file (it is %s)", what,
				psktun_file_kind(st.st_mode));
		return fd;
	}
	if (fd < 0) {
		psktun_diag_add(diag, path, 0, "cannot open the %s file: %s", what, strerror(-fd));
		return fd;
	}
	if (st.st_mode & (S_IWGRP | S_IRWXO)) {
		close(fd);
		psktun_diag_add(diag, path, 0, "%s file is group-writable or open to others "
				"(mode %04o); run chmod 600 %s", what, (unsigned)(st.st_mode & 07777), path);
		return -EPERM;
	}
	/* read(2) into our own buffers, zeroed after: stdio's would be freed with the key in it */
	for (;;) {
		ssize_t got = read(fd, chunk, sizeof(chunk));

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		for (ssize_t i = 0; i < got && n < sizeof(text); i++)
			if (!isspace((unsigned char)chunk[i]))
				text[n++] = chunk[i];
		if (n == sizeof(text))
			break;
	}
	gnutls_memset(chunk, 0, sizeof(chunk));
	close(fd);
	for (hex = 0; hex + 1 < n && hex / 2 < len && isxdigit((unsigned char)text[hex]) &&
		      isxdigit((unsigned char)text[hex + 1]); hex += 2) {
		char byte[3] = { text[hex], text[hex + 1], 0 };

		key[hex / 2] = (uint8_t)strtoul(byte, NULL, 16);
	}
	gnutls_memset(text, 0, sizeof(text));
	if (n != 2 * len || hex != n) {
		gnutls_memset(key, 0, sizeof(key));
		psktun_diag_add(diag, path, 0, "the %s must be %zu bytes as %zu hex digits", what, len, 2 * len);
		return -EINVAL;
	}
	memcpy(out, key, len);
	gnutls_memset(key, 0, sizeof(key));
	return 0;
}

/* HMAC-SHA256(master, label): one key per use, so a key never serves two algorithms. */
void psktun_seal_keys_derive(const uint8_t *master, size_t len, struct psktun_seal_keys *out)
{
	static const char seal_label[] = "psktun seal v1", index_label[] = "psktun index v1";

	gnutls_hmac_fast(GNUTLS_MAC_SHA256, master, len, seal_label, sizeof(seal_label) - 1, out->seal);
	gnutls_hmac_fast(GNUTLS_MAC_SHA256, master, len, index_label, sizeof(index_label) - 1, out->index);
}

static int aead_open(const uint8_t *key, gnutls_aead_cipher_hd_t *h)
{
	gnutls_datum_t k = { (uint8_t *)key, PSKTUN_SEAL_KEY_LEN };

	return gnutls_aead_cipher_init(h, GNUTLS_CIPHER_AES_256_GCM, &k) < 0 ? -EIO : 0;
}

int psktun_seal(const uint8_t key[PSKTUN_SEAL_KEY_LEN], const void *ad, size_t ad_len,
		const void *in, size_t len, uint8_t *out)
{
	gnutls_aead_cipher_hd_t h;
	size_t out_len = len + PSKTUN_SEAL_TAG;
	int r;

	/* a random 96-bit nonce: GCM's limit (2^32 messages a key) is far off for a cache */
	if (gnutls_rnd(GNUTLS_RND_NONCE, out, PSKTUN_SEAL_NONCE) < 0 || aead_open(key, &h) < 0)
		return -EIO;
	r = gnutls_aead_cipher_encrypt(h, out, PSKTUN_SEAL_NONCE, ad, ad_len, PSKTUN_SEAL_TAG, in, len,
				       out + PSKTUN_SEAL_NONCE, &out_len);
	gnutls_aead_cipher_deinit(h);
	return r < 0 ? -EIO : 0;
}

int psktun_unseal(const uint8_t key[PSKTUN_SEAL_KEY_LEN], const void *ad, size_t ad_len,
		  const uint8_t *in, size_t len, uint8_t *out)
{
	gnutls_aead_cipher_hd_t h;
	size_t out_len;
	int r;

	if (len < PSKTUN_SEAL_OVERHEAD)
		return -EBADMSG;
	out_len = len - PSKTUN_SEAL_OVERHEAD;
	if (aead_open(key, &h) < 0)
		return -EIO;
	r = gnutls_aead_cipher_decrypt(h, in, PSKTUN_SEAL_NONCE, ad, ad_len, PSKTUN_SEAL_TAG,
				       in + PSKTUN_SEAL_NONCE, len - PSKTUN_SEAL_NONCE, out, &out_len);
	gnutls_aead_cipher_deinit(h);
	return r < 0 ? -EBADMSG : 0;
}

uint32_t psktun_crc32(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
	}
	return ~crc;
}

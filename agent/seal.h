/* seal: hex key files, and sealing what leaves the process (state file, shared cache) with AEAD. */
#ifndef PSKTUN_SEAL_H
#define PSKTUN_SEAL_H
#include <stddef.h>
#include <stdint.h>
#include "diag.h"

/*
 * A key of `len` bytes written as 2*len hex digits (whitespace ignored) in a
 * regular file only its owner may write or others read, like the key file.
 * `what` names it in problems ("ticket key": "the ticket key file is ...").
 * Returns 0 with key filled, or a negative errno with a line in diag; the
 * buffers that held the text are zeroed.
 */
int psktun_hexkey_load(const char *path, const char *what, uint8_t *key, size_t len,
		       struct psktun_diag *diag);

/* The keys derived from a cache key file's 32 bytes, one for each use. */
#define PSKTUN_SEAL_KEY_LEN 32
struct psktun_seal_keys {
	uint8_t seal[PSKTUN_SEAL_KEY_LEN];	/* AES-256-GCM: state file, shared cache values */
	uint8_t index[PSKTUN_SEAL_KEY_LEN];	/* HMAC-SHA256: shared cache keys */
};
void psktun_seal_keys_derive(const uint8_t *master, size_t len, struct psktun_seal_keys *out);

#define PSKTUN_SEAL_NONCE 12
#define PSKTUN_SEAL_TAG 16
#define PSKTUN_SEAL_OVERHEAD (PSKTUN_SEAL_NONCE + PSKTUN_SEAL_TAG)

/* out (len + PSKTUN_SEAL_OVERHEAD bytes) = random nonce, ciphertext, tag; ad is
 * authenticated, not stored. 0 or a negative errno. */
int psktun_seal(const uint8_t key[PSKTUN_SEAL_KEY_LEN], const void *ad, size_t ad_len,
		const void *in, size_t len, uint8_t *out);
/* The reverse: out gets len - PSKTUN_SEAL_OVERHEAD bytes; -EBADMSG when the
 * tag does not match (another key, or damage). */
int psktun_unseal(const uint8_t key[PSKTUN_SEAL_KEY_LEN], const void *ad, size_t ad_len,
		  const uint8_t *in, size_t len, uint8_t *out);

/* CRC-32 (IEEE 802.3, as zlib's), for what is not sealed. */
uint32_t psktun_crc32(uint32_t crc, const void *data, size_t len);
#endif

/* keys: the PSK key store, read from a psktool-format file ("identity:hexkey" lines). */
#ifndef PSKTUN_KEYS_H
#define PSKTUN_KEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "diag.h"

#define PSKTUN_KEY_MIN 16	/* bytes */
#define PSKTUN_KEY_MAX 64	/* bytes; GnuTLS accepts longer, meters never use more */
#define PSKTUN_IDENTITY_MAX 128	/* bytes; longer lines are errors */

struct psktun_key {
	char *identity;		/* NUL-terminated, in the store's names */
	size_t identity_len;
	uint8_t *key;		/* in the store's secret pages (secmem), zeroed when freed */
	size_t key_len;
	int line;		/* in the key file (addition) */
};

/* Sorted by identity (memcmp order, then length) for binary search. */
struct psktun_keys {
	struct psktun_key *v;
	size_t n;
	uint8_t *secret;	/* every key's bytes: psktun_secmem pages, out of core dumps */
	size_t secret_len, secret_cap;
	char *names;		/* every identity, NUL-terminated, one after the other: a
				 * million meters are one allocation, not a million */
	size_t names_len, names_cap;
};

/*
 * Load a key file. Refuses a file that is group-writable or readable or
 * writable by others ("FILE: key file is group-writable or open to others (mode 0644);
 * run chmod 600 FILE (or chmod 640 ...)", -EPERM); 0640 is fine (root:psktun 0640).
 * Each bad line is reported "FILE:LINE: message" (never quoting a key);
 * duplicate identities, keys shorter than PSKTUN_KEY_MIN bytes, odd or
 * non-hex digits, empty identities, identities with ':' are errors.
 * '#' comment lines and blank lines are skipped; trailing CR/whitespace ignored.
 * Returns 0 and *out, or a negative errno with at least one diag line.
 * With check_mode false the permission check is skipped (for tests and psktunctl).
 */
int psktun_keys_load(const char *path, bool check_mode, struct psktun_keys **out, struct psktun_diag *diag);

/* NULL if absent. */
const struct psktun_key *psktun_keys_find(const struct psktun_keys *k, const char *identity, size_t len);

/* What a reload changes for an identity of the running store. */
struct psktun_key_change {
	const struct psktun_key *old;	/* in the running store */
	bool removed;			/* gone from the new one (else: another key) */
};

/*
 * The identities of `old` that `now` lacks or holds with another key, in
 * old's (sorted) order: the sessions and records a reload may have to close.
 * Reads both stores and changes neither, so the event loop may go on reading
 * old meanwhile (a reload runs this in a thread). Returns 0 with *out
 * (malloc'd; NULL when nothing changed) and *n, or -ENOMEM.
 */
int psktun_keys_changed(const struct psktun_keys *old, const struct psktun_keys *now,
			struct psktun_key_change **out, size_t *n);

/* In a sorted array from psktun_keys_changed: NULL if identity is not there. */
const struct psktun_key_change *psktun_keys_change_find(const struct psktun_key_change *v, size_t n,
							const char *identity, size_t len);

/* Locks the key pages again after fork() (daemonizing), which drops the lock. */
void psktun_keys_relock(const struct psktun_keys *k);

/* Zeroes every key, frees everything; NULL is fine. */
void psktun_keys_free(struct psktun_keys *k);
#endif

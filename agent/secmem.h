/* secmem: memory for key material: whole pages, left out of core dumps, locked where allowed, zeroed when freed. */
#ifndef PSKTUN_SECMEM_H
#define PSKTUN_SECMEM_H
#include <stddef.h>

/*
 * `len` zeroed bytes on pages of their own, marked MADV_DONTDUMP (neither a
 * kernel core dump nor gcore writes them) and mlock()ed so they never reach
 * swap. A refused mlock (RLIMIT_MEMLOCK) is not an error: it is logged once
 * a process. NULL when out of memory or when the pages cannot be kept out
 * of dumps. len 0 gives NULL.
 */
void *psktun_secmem_alloc(size_t len);
/* Locks it again: a child of fork() inherits MADV_DONTDUMP but not the lock. */
void psktun_secmem_relock(void *p, size_t len);
/* Zeroes, unlocks and unmaps what psktun_secmem_alloc(len) gave; NULL is fine. */
void psktun_secmem_free(void *p, size_t len);
#endif

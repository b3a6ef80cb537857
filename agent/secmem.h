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
/*
 * The same, but `len` bytes shared with the children fork() makes afterwards
 * (MAP_SHARED: what a child writes, the caller reads), of which only the
 * pages [lock_off, lock_off + lock_len) are locked (lock_off a page
 * multiple): those for keys; the whole is out of dumps. Free it with
 * psktun_secmem_free_in(p, len, p + lock_off, lock_len).
 */
void *psktun_secmem_alloc_shared(size_t len, size_t lock_off, size_t lock_len);
/* Locks it again: a child of fork() inherits MADV_DONTDUMP but not the lock. */
void psktun_secmem_relock(void *p, size_t len);
/* Zeroes, unlocks and unmaps what psktun_secmem_alloc(len) gave; NULL is fine. */
void psktun_secmem_free(void *p, size_t len);
/* Zeroes and unlocks the `len` key bytes at p, then unmaps all of the
 * map_len bytes at map that hold them; either may be NULL. */
void psktun_secmem_free_in(void *map, size_t map_len, void *p, size_t len);
#endif

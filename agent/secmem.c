/* secmem: memory for key material: whole pages, left out of core dumps, locked where allowed, zeroed when freed. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "log.h"
#include "secmem.h"

static size_t round_up(size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (len + page - 1) / page * page;
}

/* size bytes (whole pages) out of dumps, [lock_off, lock_off + lock_len) locked. */
static void *map_pages(size_t size, int share, size_t lock_off, size_t lock_len)
{
	static int mlock_refused;	/* logged once a process */
	char *p;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, share | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (madvise(p, size, MADV_DONTDUMP) < 0) {
		log_err("cannot keep key memory out of core dumps: %s", strerror(errno));
		munmap(p, size);
		return NULL;
	}
	if (lock_len && mlock(p + lock_off, lock_len) < 0 &&
	    !__atomic_exchange_n(&mlock_refused, 1, __ATOMIC_RELAXED))
		log_warn("cannot lock key memory (%s): keys may be written to swap; raise the memlock "
			    "limit (LimitMEMLOCK=, ulimit -l) to lock them", strerror(errno));
	return p;
}

void *psktun_secmem_alloc(size_t len)
{
	size_t size;

	if (!len)
		return NULL;
	size = round_up(len);
	return map_pages(size, MAP_PRIVATE, 0, size);
}

void *psktun_secmem_alloc_shared(size_t len, size_t lock_off, size_t lock_len)
{
	if (!len || lock_off % (size_t)sysconf(_SC_PAGESIZE) || lock_off + lock_len > len)
		return NULL;
	return map_pages(round_up(len), MAP_SHARED, lock_off, round_up(lock_len));
}

void psktun_secmem_relock(void *p, size_t len)
{
	if (p)
		mlock(p, round_up(len));
}

void psktun_secmem_free_in(void *map, size_t map_len, void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		munlock(p, round_up(len));
	}
	if (map)
		munmap(map, round_up(map_len));
}

void psktun_secmem_free(void *p, size_t len)
{
	if (p)
		psktun_secmem_free_in(p, len, p, round_up(len));
}

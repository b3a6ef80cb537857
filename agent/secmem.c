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

void *psktun_secmem_alloc(size_t len)
{
	static int mlock_refused;	/* logged once a process */
	size_t size;
	void *p;

	if (!len)
		return NULL;
	size = round_up(len);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (madvise(p, size, MADV_DONTDUMP) < 0) {
		log_err("cannot keep key memory out of core dumps: %s", strerror(errno));
		munmap(p, size);
		return NULL;
	}
	if (mlock(p, size) < 0 && !__atomic_exchange_n(&mlock_refused, 1, __ATOMIC_RELAXED))
		log_warn("cannot lock key memory (%s): keys may be written to swap; raise the memlock "
			    "limit (LimitMEMLOCK=, ulimit -l) to lock them", strerror(errno));
	return p;
}

void psktun_secmem_relock(void *p, size_t len)
{
	if (p)
		mlock(p, round_up(len));
}

void psktun_secmem_free(void *p, size_t len)
{
	size_t size;

	if (!p)
		return;
	size = round_up(len);
	explicit_bzero(p, size);
	munlock(p, size);
	munmap(p, size);
}

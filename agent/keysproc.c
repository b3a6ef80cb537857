/* keysproc: loads a key file in a child process of its own session, into memory the caller shares. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keysproc.h"
#include "lowprio.h"
#include "secmem.h"

#define DIAG_BYTES (32u << 10)	/* the child's problem lines, NUL after each */
#define CHILD_DONE 0		/* exit codes: the header is filled in */
#define CHILD_NO_ROOM 3		/* the file grew past what was set aside */

/* What the child reports, at the start of the shared mapping. */
struct shared {
	int r;			/* psktun_keys_load()'s */
	bool ch_known;
	size_t n, names_len, secret_len, n_ch;
	size_t diag_n, diag_lost;
	char diag[DIAG_BYTES];
};

static size_t page_up(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (n + page - 1) / page * page;
}

/* Room for any valid file of `size` bytes: a key line holds at least
 * 1 + 1 + 2 * PSKTUN_KEY_MIN bytes and a newline, an identity and two hex
 * digits a key byte. */
static void lay_out(struct psktun_keys_layout *l, size_t size, size_t old_n)
{
	l->secret_off = page_up(sizeof(struct shared));
	l->secret_cap = page_up(size / 2 + 1);
	l->v_off = l->secret_off + l->secret_cap;
	l->v_cap = (size + 1) / (3 + 2 * PSKTUN_KEY_MIN) + 1;
	l->names_off = page_up(l->v_off + l->v_cap * sizeof(struct psktun_key));
	l->names_cap = size + 1;
	l->ch_off = page_up(l->names_off + l->names_cap);
	l->ch_cap = old_n;
	l->len = page_up(l->ch_off + (old_n ? old_n : 1) * sizeof(struct psktun_key_change));
}

static void diag_out(struct shared *sh, const struct psktun_diag *diag)
{
	size_t at = 0;

	sh->diag_lost = diag->lost;
	for (size_t i = 0; i < diag->n && i < PSKTUN_DIAG_MAX; i++) {
		size_t len = strlen(diag->line[i]) + 1;

		if (at + len > sizeof(sh->diag)) {
			sh->diag_lost += diag->n - i;
			break;
		}
		memcpy(sh->diag + at, diag->line[i], len);
		at += len;
		sh->diag_n++;
	}
}

static void diag_in(const struct shared *sh, struct psktun_diag *diag)
{
	const char *s = sh->diag;

	for (size_t i = 0; i < sh->diag_n; i++, s += strlen(s) + 1)
		psktun_diag_add(diag, NULL, 0, "%s", s);
	diag->lost += sh->diag_lost;
}

/* The child's store, moved into the mapping: pointers rebased to it. */
static int store_out(char *map, const struct psktun_keys_layout *l, const struct psktun_keys *k,
		     const struct psktun_key_change *ch, size_t n_ch)
{
	struct shared *sh = (struct shared *)map;
	struct psktun_key *v = (struct psktun_key *)(map + l->v_off);
	char *names = map + l->names_off;
	uint8_t *secret = (uint8_t *)map + l->secret_off;

	if (k->n > l->v_cap || k->names_len > l->names_cap || k->secret_len > l->secret_cap || n_ch > l->ch_cap)
		return -ENOSPC;
	memcpy(names, k->names, k->names_len);
	memcpy(secret, k->secret, k->secret_len);
	for (size_t i = 0; i < k->n; i++) {
		v[i] = k->v[i];
		v[i].identity = names + (k->v[i].identity - k->names);
		v[i].key = secret + (k->v[i].key - k->secret);
	}
	if (n_ch)	/* pointers into `old`: the same in the caller */
		memcpy(map + l->ch_off, ch, n_ch * sizeof(*ch));
	sh->n = k->n;
	sh->names_len = k->names_len;
	sh->secret_len = k->secret_len;
	sh->n_ch = n_ch;
	return 0;
}

/* nice +10, for the process and for its session's autogroup (sched(7)):
 * with autogroups the scheduler weighs sessions against each other first,
 * and a process's nice counts only inside its own; at autogroup nice 0 the
 * child was one more session as heavy as the daemon's, and a busy
 * machine's round trips stretched for all of it. The kernel refuses a
 * second autogroup change within 100 ms (EAGAIN): a few tries. */
static void lower_priority(void)
{
	static const char ten[] = "10";
	int fd, nice;

	_Static_assert(PSKTUN_LOWPRIO_NICE == 10, "the autogroup's nice, as text");
	errno = 0;
	nice = getpriority(PRIO_PROCESS, 0);
	if (nice != -1 || errno == 0)
		(void)setpriority(PRIO_PROCESS, 0, nice + PSKTUN_LOWPRIO_NICE);
	fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	for (int i = 0; i < 5; i++) {
		if (write(fd, ten, sizeof(ten) - 1) >= 0 || errno != EAGAIN)
			break;
		(void)nanosleep(&(struct timespec){ .tv_nsec = 25 * 1000 * 1000 }, NULL);
	}
	close(fd);
}

static _Noreturn void child(pid_t parent, char *map, const struct psktun_keys_layout *l, const char *path,
			    bool check_mode, const struct psktun_keys *old)
{
	struct shared *sh = (struct shared *)map;
	struct psktun_keys *k = NULL;
	struct psktun_key_change *ch = NULL;
	struct psktun_diag diag;
	size_t n_ch = 0;
	int code = CHILD_DONE;

	/* Gone with the thread that waits for it, whatever kills that. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(1);
	(void)setsid();
	lower_priority();
	psktun_diag_init(&diag);
	sh->r = psktun_keys_load(path, check_mode, &k, &diag);
	if (sh->r == 0) {
		sh->ch_known = psktun_keys_changed(old, k, &ch, &n_ch) == 0;
		if (store_out(map, l, k, ch, n_ch) < 0)
			code = CHILD_NO_ROOM;
	}
	diag_out(sh, &diag);
	free(ch);
	psktun_keys_free(k);	/* zeroes this copy of the keys */
	_exit(code);
}

static int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int psktun_keys_apart_prepare(struct psktun_keys_apart *a, const char *path, const struct psktun_keys *old)
{
	struct stat st;

	memset(a, 0, sizeof(*a));
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (64 << 20))
		return PSKTUN_KEYS_NOT_APART;	/* the load here says why */
	lay_out(&a->l, (size_t)st.st_size, old ? old->n : 0);
	a->map = psktun_secmem_alloc_shared(a->l.len, a->l.secret_off, a->l.secret_cap);
	return a->map ? 0 : PSKTUN_KEYS_NOT_APART;
}

int psktun_keys_apart_start(struct psktun_keys_apart *a, const char *path, bool check_mode,
			    const struct psktun_keys *old)
{
	pid_t parent = getpid(), pid;

	if (!a->map)
		return PSKTUN_KEYS_NOT_APART;
	pid = fork();
	if (pid == 0)
		child(parent, a->map, &a->l, path, check_mode, old);
	if (pid < 0) {
		psktun_keys_apart_drop(a);
		return PSKTUN_KEYS_NOT_APART;
	}
	a->pid = pid;
	return 0;
}

void psktun_keys_apart_drop(struct psktun_keys_apart *a)
{
	if (a->pid > 0) {
		kill(a->pid, SIGKILL);
		wait_child(a->pid);
	}
	if (a->map)
		psktun_secmem_free_in(a->map, a->l.len, a->map + a->l.secret_off, a->l.secret_cap);
	memset(a, 0, sizeof(*a));
}

/* Its exit code; killed at once when *cancel turns true (polled every 20 ms:
 * the thread that reaps it is the one that kills it, so never another pid). */
static int wait_child_or_cancel(pid_t pid, const bool *cancel)
{
	int st;
	pid_t got;

	for (;;) {
		got = waitpid(pid, &st, WNOHANG);
		if (got == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (got < 0 && errno != EINTR)
			return -1;
		if (cancel && __atomic_load_n(cancel, __ATOMIC_ACQUIRE)) {
			kill(pid, SIGKILL);
			wait_child(pid);
			return -1;
		}
		(void)nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
	}
}

int psktun_keys_apart_finish(struct psktun_keys_apart *a, const bool *cancel, struct psktun_keys **out,
			     struct psktun_key_change **ch, size_t *n_ch, bool *ch_known,
			     struct psktun_diag *diag)
{
	struct psktun_keys *k = calloc(1, sizeof(*k));
	struct shared *sh = (struct shared *)a->map;
	int code = a->pid > 0 ? wait_child_or_cancel(a->pid, cancel) : -1, r;

	*out = NULL;
	*ch = NULL;
	*n_ch = 0;
	*ch_known = false;
	a->pid = 0;
	if (!k || code != CHILD_DONE) {
		free(k);
		psktun_keys_apart_drop(a);
		return PSKTUN_KEYS_NOT_APART;
	}
	diag_in(sh, diag);
	if (sh->r < 0) {
		r = sh->r;
		free(k);
		psktun_keys_apart_drop(a);
		return r;
	}
	if (sh->n_ch) {
		*ch = malloc(sh->n_ch * sizeof(**ch));
		if (!*ch)	/* not known: the commit checks every session */
			sh->ch_known = false;
		else
			memcpy(*ch, a->map + a->l.ch_off, sh->n_ch * sizeof(**ch));
	}
	*n_ch = *ch ? sh->n_ch : 0;
	*ch_known = sh->ch_known;
	k->map = a->map;
	k->map_len = a->l.len;
	k->v = sh->n ? (struct psktun_key *)(a->map + a->l.v_off) : NULL;
	k->n = sh->n;
	k->names = a->map + a->l.names_off;
	k->names_len = k->names_cap = sh->names_len;
	k->secret = (uint8_t *)a->map + a->l.secret_off;
	k->secret_len = sh->secret_len;
	k->secret_cap = a->l.secret_cap;
	memset(a, 0, sizeof(*a));	/* the store owns the mapping now */
	*out = k;
	return 0;
}

int psktun_keys_load_apart(const char *path, bool check_mode, const struct psktun_keys *old,
			   struct psktun_keys **out, struct psktun_key_change **ch, size_t *n_ch,
			   bool *ch_known, struct psktun_diag *diag)
{
	struct psktun_keys_apart a;

	*out = NULL;
	*ch = NULL;
	*n_ch = 0;
	*ch_known = false;
	if (psktun_keys_apart_prepare(&a, path, old) != 0 ||
	    psktun_keys_apart_start(&a, path, check_mode, old) != 0)
		return PSKTUN_KEYS_NOT_APART;
	return psktun_keys_apart_finish(&a, NULL, out, ch, n_ch, ch_known, diag);
}

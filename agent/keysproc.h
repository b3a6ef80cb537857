/* keysproc: loads a key file in a child process of its own session, into memory the caller shares. */
#ifndef PSKTUN_KEYSPROC_H
#define PSKTUN_KEYSPROC_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "diag.h"
#include "keys.h"

/* psktun_keys_load_apart() could not run the child (or the file outgrew what
 * was set aside for it): load it here instead. */
#define PSKTUN_KEYS_NOT_APART 1

/*
 * psktun_keys_load(path, check_mode, out, diag) and, when it succeeds,
 * psktun_keys_changed(old, *out, ch, n_ch) (*ch_known: whether that worked),
 * done by a child process that calls setsid() and lowers its priority
 * (nice +10, and its new autogroup's too).
 *
 * Why a process and not a thread: Linux shares CPU time between sessions
 * (autogroups) or cgroups first and between the threads of one only then,
 * so a low-priority thread spends its own process's share, and for all of a
 * million-key load (1.6 s of CPU) the event loop waits for the CPU behind
 * the other processes of a busy machine. A child in a session of its own
 * spends its own share, and at autogroup nice +10 yields to the others.
 *
 * The store lands in one shared anonymous mapping made before the fork
 * (its key pages out of core dumps and locked, like psktun_secmem), at the
 * same address in both processes, so the child's pointers hold in the
 * caller; psktun_keys_free() zeroes and unmaps it. `old` is read by the child
 * (its copy-on-write image), changed by neither.
 *
 * Returns what psktun_keys_load() would (0 or a negative errno, with the
 * child's diag lines in diag), or PSKTUN_KEYS_NOT_APART with nothing done.
 */
int psktun_keys_load_apart(const char *path, bool check_mode, const struct psktun_keys *old,
			   struct psktun_keys **out, struct psktun_key_change **ch, size_t *n_ch,
			   bool *ch_known, struct psktun_diag *diag);

/* The same in three steps, so that the fork() can be made by the thread
 * whose malloc() must not wait for it: glibc's fork() holds every malloc
 * arena's lock while the kernel copies the page tables, and from a low-
 * priority thread that lost the CPU there, the event loop's next malloc()
 * waited 43 ms (perf: __lll_lock_wait_private). */
struct psktun_keys_layout {	/* where each part lies in the mapping, how much it may hold */
	size_t secret_off, secret_cap;	/* page-aligned: locked */
	size_t v_off, v_cap;		/* entries */
	size_t names_off, names_cap;	/* bytes */
	size_t ch_off, ch_cap;		/* changes */
	size_t len;
};

struct psktun_keys_apart {
	struct psktun_keys_layout l;
	char *map;
	pid_t pid;
};

/* Any thread: sets the mapping aside (0), or PSKTUN_KEYS_NOT_APART. */
int psktun_keys_apart_prepare(struct psktun_keys_apart *a, const char *path, const struct psktun_keys *old);
/* The thread that must not wait: fork()s the child (1-4 ms with a million
 * keys); 0, or PSKTUN_KEYS_NOT_APART (and a is dropped). */
int psktun_keys_apart_start(struct psktun_keys_apart *a, const char *path, bool check_mode,
			    const struct psktun_keys *old);
/* Any thread: waits for the child; then as psktun_keys_load_apart(). When
 * *cancel (if not NULL) turns true meanwhile, kills it: PSKTUN_KEYS_NOT_APART. */
int psktun_keys_apart_finish(struct psktun_keys_apart *a, const bool *cancel, struct psktun_keys **out,
			     struct psktun_key_change **ch, size_t *n_ch, bool *ch_known,
			     struct psktun_diag *diag);
/* Kills a started child, frees the mapping; a zeroed one is fine. */
void psktun_keys_apart_drop(struct psktun_keys_apart *a);
#endif

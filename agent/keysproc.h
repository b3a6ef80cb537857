/* keysproc: loads a key file in a child process of its own session, into memory the caller shares. */
#ifndef PSKTUN_KEYSPROC_H
#define PSKTUN_KEYSPROC_H
#include <stdbool.h>
#include <stddef.h>
#include "diag.h"
#include "keys.h"

/* psktun_keys_load_apart() could not run the child (or the file outgrew what
 * was set aside for it): load it here instead. */
#define PSKTUN_KEYS_NOT_APART 1

/*
 * psktun_keys_load(path, check_mode, out, diag) and, when it succeeds,
 * psktun_keys_changed(old, *out, ch, n_ch) (*ch_known: whether that worked),
 * done by a child process that calls setsid() and lowers its priority
 * (nice +10).
 *
 * Why a process and not a thread: Linux shares CPU time between sessions
 * (autogroups) or cgroups first and between the threads of one only then,
 * so a low-priority thread spends its own process's share, and for all of a
 * million-key load (1.6 s of CPU) the event loop waits for the CPU behind
 * the other processes of a busy machine. A child in a session of its own
 * spends its own share.
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
#endif

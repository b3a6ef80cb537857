/* lowprio: runs a long job (a reload's key file) on a thread of its own at the lowest CPU priority. */
#ifndef PSKTUN_LOWPRIO_H
#define PSKTUN_LOWPRIO_H

/* How much lower (nice): the event loops sharing the CPUs with the job come
 * first; on an idle machine the job runs as fast as before, on a busy one it
 * takes longer and the traffic does not wait for it. */
#define PSKTUN_LOWPRIO_NICE 10

/*
 * Runs fn(arg) on a new thread scheduled SCHED_IDLE, its nice value also
 * PSKTUN_LOWPRIO_NICE above the process's, and returns when it is done.
 * Why SCHED_IDLE and not only nice: Linux schedules the whole process as one
 * group against the machine's other sessions (autogroups, or the service's
 * cgroup), and a thread's nice counts only inside that group: the nice +10
 * thread spent the group's share and the event loop waited for a CPU behind
 * other sessions' work (a reload added 54 ms to a round trip beside make -j4).
 * A SCHED_IDLE thread weighs 3 against the loop's 1024, and the loop preempts
 * it at once. Either setting may be refused (a seccomp filter): then the job
 * runs as it can, silently.
 *
 * Called from libuv's thread pool: that thread only waits, and keeps its own
 * priority for the next job (a thread cannot raise its priority back without
 * privileges). If no thread can be made, runs fn here. Returns fn's result.
 */
int psktun_lowprio_run(int (*fn)(void *arg), void *arg);
#endif

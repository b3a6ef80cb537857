/* lowprio: runs a long job (a reload's key file) on a thread of its own at a lower CPU priority. */
#ifndef PSKTUN_LOWPRIO_H
#define PSKTUN_LOWPRIO_H

/* How much lower (nice): the event loops sharing the CPUs with the job come
 * first; on an idle machine the job runs as fast as before, on a busy one it
 * takes longer and the traffic does not wait for it. */
#define PSKTUN_LOWPRIO_NICE 10

/*
 * Runs fn(arg) on a new thread whose nice value is PSKTUN_LOWPRIO_NICE above
 * the process's, and returns when it is done. Called from libuv's thread
 * pool: that thread only waits, and keeps its own priority for the next job
 * (a thread cannot raise its priority back without privileges). If no thread
 * can be made, runs fn here. Returns fn's result.
 */
int psktun_lowprio_run(int (*fn)(void *arg), void *arg);
#endif

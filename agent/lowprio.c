/* lowprio: runs a long job on a thread of its own at a lower CPU priority, and waits for it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "lowprio.h"

struct job {
	int (*fn)(void *arg);
	void *arg;
	int r;
};

static void *run(void *p)
{
	struct job *j = p;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	struct sched_param sp = { 0 };
	int nice;

	/* SCHED_IDLE first: the thread's weight in the process's scheduling group
	 * (its autogroup or cgroup) is then near nothing, so the group's CPU share
	 * stays with the event loop, which also preempts the job at once. */
	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	/* Linux: PRIO_PROCESS with a thread id sets that thread's nice alone. */
	errno = 0;
	nice = getpriority(PRIO_PROCESS, (id_t)tid);
	if (nice != -1 || errno == 0)
		(void)setpriority(PRIO_PROCESS, (id_t)tid, nice + PSKTUN_LOWPRIO_NICE);
	j->r = j->fn(j->arg);
	return NULL;
}

int psktun_lowprio_run(int (*fn)(void *arg), void *arg)
{
	struct job j = { fn, arg, 0 };
	pthread_t th;

	if (pthread_create(&th, NULL, run, &j) != 0)
		return fn(arg);
	pthread_join(th, NULL);
	return j.r;
}

/* test_lowprio: the job runs on a thread of its own, scheduled SCHED_IDLE at nice +10;
 * the caller's own scheduling is left as it was. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "lowprio.h"

struct seen {
	pid_t tid;
	int policy;
	int nice;
};

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static int nice_of(pid_t tid)
{
	errno = 0;
	return getpriority(PRIO_PROCESS, (id_t)tid);
}

static int look(void *arg)
{
	struct seen *s = arg;

	s->tid = my_tid();
	s->policy = sched_getscheduler(0);
	s->nice = nice_of(s->tid);
	return -42;
}

static void job_runs_idle_on_its_own_thread(void **state)
{
	struct seen s = { 0, -1, 0 };
	int nice0 = nice_of(my_tid());
	int policy0 = sched_getscheduler(0);

	(void)state;
	assert_int_equal(psktun_lowprio_run(look, &s), -42);
	assert_int_not_equal(s.tid, 0);
	assert_int_not_equal(s.tid, my_tid());
	/* SCHED_IDLE: the job's weight in the daemon's scheduling group is near
	 * nothing, so it never spends the share the event loop needs. */
	assert_int_equal(s.policy, SCHED_IDLE);
	assert_int_equal(s.nice, nice0 + PSKTUN_LOWPRIO_NICE > 19 ? 19 : nice0 + PSKTUN_LOWPRIO_NICE);
	assert_int_equal(sched_getscheduler(0), policy0);
	assert_int_equal(nice_of(my_tid()), nice0);
}

static void job_result_and_second_job(void **state)
{
	struct seen a = { 0, -1, 0 }, b = { 0, -1, 0 };

	(void)state;
	assert_int_equal(psktun_lowprio_run(look, &a), -42);
	assert_int_equal(psktun_lowprio_run(look, &b), -42);
	assert_int_equal(b.policy, SCHED_IDLE);
	assert_int_equal(b.nice, a.nice);	/* not lowered twice */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(job_runs_idle_on_its_own_thread),
		cmocka_unit_test(job_result_and_second_job),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

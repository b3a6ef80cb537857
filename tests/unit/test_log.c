/* test_log: thresholds per -v and the one-line stderr format. */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "tmpdir.h"

/* Runs fn with stderr sent to a file, and returns what it wrote. */
static const char *capture_stderr(void (*fn)(void))
{
	static char out[4096];
	int saved = dup(STDERR_FILENO), fd;
	ssize_t n;

	test_dir_make();
	fd = open(test_path("stderr"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0 && saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	fn();
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fd, out, sizeof(out) - 1, 0);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
	test_dir_remove();
	return out;
}

static void default_threshold_is_notice(void **state)
{
	psktun_log_init(true, 0);
	assert_true(psktun_log_enabled(LOG_ERR));
	assert_true(psktun_log_enabled(LOG_NOTICE));
	assert_false(psktun_log_enabled(LOG_INFO));
	assert_false(psktun_log_enabled(LOG_DEBUG));
	psktun_log_deinit();
}

static void each_v_lowers_the_threshold_down_to_debug(void **state)
{
	psktun_log_init(true, 1);
	assert_true(psktun_log_enabled(LOG_INFO));
	assert_false(psktun_log_enabled(LOG_DEBUG));
	psktun_log_init(true, 2);
	assert_true(psktun_log_enabled(LOG_DEBUG));
	psktun_log_init(true, 9);
	assert_true(psktun_log_enabled(LOG_DEBUG));
	assert_false(psktun_log_enabled(LOG_DEBUG + 1));
	psktun_log_deinit();
}

static void log_some(void)
{
	psktun_log_init(true, 0);
	errno = EAGAIN;
	log_notice("tunnel %s: session %s up", "coap", "meter-0001");
	assert_int_equal(errno, EAGAIN);	/* logging keeps errno for the caller */
	log_info("not at the default level");
	log_debug("nor this");
	log_err("two\nlines\r?");
	log_warn("warn %d", 7);
	psktun_log_deinit();
}

/* What systemd does for a service whose stderr is the journal: names fd 2 in JOURNAL_STREAM. */
static void journal_is_stderr(void)
{
	struct stat st;
	char v[64];

	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	FMT(v, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	assert_int_equal(setenv("JOURNAL_STREAM", v, 1), 0);
}

static void log_some_to_the_journal(void)
{
	journal_is_stderr();
	log_some();
	unsetenv("JOURNAL_STREAM");
}

static void stderr_lines_are_one_per_event_with_pid_and_level(void **state)
{
	char want[512];

	FMT(want,
	    "psktund[%ld]: notice: tunnel coap: session meter-0001 up\n"
	    "psktund[%ld]: error: two lines ?\n"
	    "psktund[%ld]: warning: warn 7\n",
	    (long)getpid(), (long)getpid(), (long)getpid());
	/* the journal stamps lines itself: no time of ours */
	assert_string_equal(capture_stderr(log_some_to_the_journal), want);
}

static time_t before, after;

/* The log's own clock (CLOCK_REALTIME): time(2) reads the coarse clock, which
 * can still name the last second while the log stamps the next one. */
static time_t realtime_s(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts), 0);
	return ts.tv_sec;
}

static void log_one_in_india(void)
{
	assert_int_equal(setenv("TZ", "IST-5:30", 1), 0);
	unsetenv("JOURNAL_STREAM");
	before = realtime_s();
	psktun_log_init(true, 0);
	log_notice("tunnel %s up", "coap");
	psktun_log_deinit();
	after = realtime_s();
	unsetenv("TZ");
}

/* The stamp must be ISO 8601 with the zone's offset, and name a time in [before, after]. */
static void assert_stamped(const char *out, const char *rest)
{
	char pattern[256], date[32];
	regmatch_t m[2];
	regex_t re;
	struct tm tm = { 0 };
	time_t t;

	FMT(pattern, "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\\.[0-9]{3}\\+05:30 psktund\\[%ld\\]: %s\n$",
	    (long)getpid(), rest);
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED), 0);
	if (regexec(&re, out, 2, m, 0) != 0)
		fail_msg("not an ISO 8601 stamped line: \"%s\"", out);
	regfree(&re);
	FMT(date, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), out + m[1].rm_so);
	assert_non_null(strptime(date, "%Y-%m-%dT%H:%M:%S", &tm));
	t = timegm(&tm) - (5 * 3600 + 30 * 60);
	assert_true(t >= before && t <= after);
}

static void a_file_or_terminal_gets_an_iso8601_time_first(void **state)
{
	assert_stamped(capture_stderr(log_one_in_india), "notice: tunnel coap up");
}

static void log_one_with_a_stale_journal_stream(void)
{
	/* inherited from a journaled parent, but fd 2 is now a file */
	assert_int_equal(setenv("JOURNAL_STREAM", "8:12345", 1), 0);
	assert_int_equal(setenv("TZ", "IST-5:30", 1), 0);
	before = realtime_s();
	psktun_log_init(true, 0);
	log_notice("tunnel %s up", "coap");
	psktun_log_deinit();
	after = realtime_s();
	unsetenv("TZ");
	unsetenv("JOURNAL_STREAM");
}

static void journal_stream_naming_another_file_still_gets_a_time(void **state)
{
	assert_stamped(capture_stderr(log_one_with_a_stale_journal_stream), "notice: tunnel coap up");
}

static const char *quote(const char *s, size_t len)
{
	static char buf[PSKTUN_QUOTED_MAX(128)];

	return psktun_quote(s, len, buf, sizeof(buf));
}

#define Q(lit) quote(lit, sizeof(lit) - 1)

static void a_name_is_one_token_whatever_it_holds(void **state)
{
	char cut[8];

	assert_string_equal(Q("meter-0001"), "meter-0001");
	assert_string_equal(Q("a.b_c:d/e@f+g"), "a.b_c:d/e@f+g");
	/* each would forge a field or a line if printed bare */
	assert_string_equal(Q("meter-A state=established peer=6.6.6.6 x"),
			    "\"meter-A state=established peer=6.6.6.6 x\"");
	assert_string_equal(Q("a=b"), "\"a=b\"");
	assert_string_equal(Q("say \"hi\""), "\"say \\\"hi\\\"\"");
	assert_string_equal(Q("back\\slash"), "\"back\\\\slash\"");
	assert_string_equal(Q("two\nlines\r\tx"), "\"two\\nlines\\r\\tx\"");
	assert_string_equal(Q("nul\0bel\a\x7f"), "\"nul\\x00bel\\x07\\x7f\"");
	assert_string_equal(Q("z\xc3\xa4hler"), "\"z\\xc3\\xa4hler\"");	/* UTF-8 */
	/* not to be read as "no identity" or as an empty field */
	assert_string_equal(Q("-"), "\"-\"");
	assert_string_equal(Q(""), "\"\"");
	/* too long for the buffer: cut, the quote still closed */
	assert_string_equal(psktun_quote("a b c d e", 9, cut, sizeof(cut)), "\"a \"");
	assert_string_equal(psktun_quote("abcdefgh", 8, cut, sizeof(cut)), "\"ab\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(default_threshold_is_notice),
		cmocka_unit_test(each_v_lowers_the_threshold_down_to_debug),
		cmocka_unit_test(stderr_lines_are_one_per_event_with_pid_and_level),
		cmocka_unit_test(a_name_is_one_token_whatever_it_holds),
		cmocka_unit_test(a_file_or_terminal_gets_an_iso8601_time_first),
		cmocka_unit_test(journal_stream_naming_another_file_still_gets_a_time),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}

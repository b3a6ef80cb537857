/* tmpdir: a scratch directory per test program, and files written into it with a given mode. */
#ifndef PSKTUN_TEST_TMPDIR_H
#define PSKTUN_TEST_TMPDIR_H
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char test_dir[PATH_MAX];

/* snprintf that must not truncate (and so keeps -Wformat-truncation quiet). */
#define FMT(buf, ...) assert_true(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

/* Made with realpath, so it compares equal to what getcwd() reports inside it. */
static inline void test_dir_make(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[PATH_MAX];

	FMT(tmpl, "%s/psktun-test-XXXXXX", base && base[0] ? base : "/tmp");
	assert_non_null(mkdtemp(tmpl));
	assert_non_null(realpath(tmpl, test_dir));
}

static inline void test_dir_remove(void)
{
	char cmd[PATH_MAX + 16];

	if (!test_dir[0])
		return;
	FMT(cmd, "rm -rf '%s'", test_dir);
	assert_int_equal(system(cmd), 0);
	test_dir[0] = '\0';
}

/* test_dir/name; returns a static buffer (one path at a time is all a test needs). */
static inline const char *test_path(const char *name)
{
	static char path[PATH_MAX];

	FMT(path, "%s/%s", test_dir, name);
	return path;
}

/* Writes len bytes to test_dir/name with exactly this mode (umask does not apply). */
static inline const char *test_write(const char *name, const void *data, size_t len, mode_t mode)
{
	const char *path = test_path(name);
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
	return path;
}

static inline const char *test_write_str(const char *name, const char *text, mode_t mode)
{
	return test_write(name, text, strlen(text), mode);
}
#endif

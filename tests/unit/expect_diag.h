/* expect_diag: assert that a psktun_diag holds exactly the given messages, in order. */
#ifndef PSKTUN_TEST_EXPECT_DIAG_H
#define PSKTUN_TEST_EXPECT_DIAG_H
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "diag.h"

/*
 * diag holds exactly n messages: for each, an int line and a const char *msg
 * follow, and the message must read "PATH:LINE: msg" (or "PATH: msg" for a
 * line <= 0). Nothing may have been lost past PSKTUN_DIAG_MAX.
 */
static inline void expect_diag_of(const struct psktun_diag *diag, const char *path, size_t n, ...)
{
	char want[PATH_MAX + 1024];
	va_list ap;

	va_start(ap, n);
	for (size_t i = 0; i < n && i < diag->n; i++) {
		int line = va_arg(ap, int);
		const char *msg = va_arg(ap, const char *);
		int w = line > 0 ? snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg)
				 : snprintf(want, sizeof(want), "%s: %s", path, msg);

		assert_true(w >= 0 && w < (int)sizeof(want));
		assert_string_equal(diag->line[i], want);
	}
	va_end(ap);
	assert_int_equal(diag->n, n);
	assert_int_equal(diag->lost, 0);
}
#endif

/* text: a growing buffer of formatted text, for the control socket's answers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "text.h"

void text_printf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	size_t cap;
	char *p;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (t->p && t->len + n < t->cap) {
			t->len += n;
			return;
		}
		cap = (t->cap ? t->cap * 2 : 4096) + n;
		p = realloc(t->p, cap);
		if (!p)
			return;
		t->p = p;
		t->cap = cap;
	}
}

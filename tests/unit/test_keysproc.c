/* test_keysproc: a key file loaded by a child process gives what a load in the process gives. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keys.h"
#include "keysproc.h"
#include "tmpdir.h"

#define KEY16 "00112233445566778899aabbccddeeff"
#define KEY16B "ffeeddccbbaa99887766554433221100"

static int setup(void **state)
{
	test_dir_make();
	return 0;
}

static int teardown(void **state)
{
	test_dir_remove();
	return 0;
}

static void same_store(const struct psktun_keys *a, const struct psktun_keys *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_string_equal(a->v[i].identity, b->v[i].identity);
		assert_int_equal(a->v[i].identity_len, b->v[i].identity_len);
		assert_int_equal(a->v[i].line, b->v[i].line);
		assert_int_equal(a->v[i].key_len, b->v[i].key_len);
		assert_memory_equal(a->v[i].key, b->v[i].key, a->v[i].key_len);
		assert_ptr_equal(psktun_keys_find(b, a->v[i].identity, a->v[i].identity_len), &b->v[i]);
	}
}

static void gives_the_store_and_the_changes_a_load_here_gives(void **state)
{
	/* test_write_str's path is its own buffer: a copy for the second file */
	char *old_path = strdup(test_write_str("old.psk", "gone:" KEY16 "\nkept:" KEY16 "\nnewkey:" KEY16 "\n", 0600));
	const char *path = test_write_str("keys.psk", "# meters\nzeta:" KEY16B "\nkept:" KEY16 "\n\nnewkey:" KEY16B
					  "\nalpha:" KEY16 KEY16 "\n", 0600);
	struct psktun_keys *old = NULL, *here = NULL, *apart = NULL;
	struct psktun_key_change *ch_here = NULL, *ch_apart = NULL;
	size_t n_here = 0, n_apart = 0;
	struct psktun_diag d1, d2;
	bool known = false;

	psktun_diag_init(&d1);
	psktun_diag_init(&d2);
	assert_int_equal(psktun_keys_load(old_path, true, &old, &d1), 0);
	assert_int_equal(psktun_keys_load(path, true, &here, &d1), 0);
	assert_int_equal(psktun_keys_changed(old, here, &ch_here, &n_here), 0);
	assert_int_equal(psktun_keys_load_apart(path, true, old, &apart, &ch_apart, &n_apart, &known, &d2), 0);
	assert_non_null(apart->map);	/* it did run apart */
	assert_int_equal(d2.n, 0);
	same_store(here, apart);
	assert_true(known);
	assert_int_equal(n_apart, 2);	/* gone (removed), newkey (another key) */
	assert_int_equal(n_here, n_apart);
	for (size_t i = 0; i < n_here; i++) {
		assert_ptr_equal(ch_apart[i].old, ch_here[i].old);
		assert_int_equal(ch_apart[i].removed, ch_here[i].removed);
	}
	assert_string_equal(ch_apart[0].old->identity, "gone");
	assert_true(ch_apart[0].removed);
	assert_string_equal(ch_apart[1].old->identity, "newkey");
	assert_false(ch_apart[1].removed);
	free(ch_here);
	free(ch_apart);
	psktun_keys_free(apart);
	psktun_keys_free(here);
	psktun_keys_free(old);
	psktun_diag_deinit(&d1);
	psktun_diag_deinit(&d2);
	free(old_path);
}

static void reports_the_problems_a_load_here_reports(void **state)
{
	const char *path = test_write_str("keys.psk", "a:" KEY16 "\nb:0011\na:" KEY16B "\nc:xyz" KEY16 "\n", 0600);
	struct psktun_keys *here = NULL, *apart = NULL;
	struct psktun_key_change *ch = NULL;
	struct psktun_diag d1, d2;
	size_t n = 0;
	bool known = true;
	int r;

	psktun_diag_init(&d1);
	psktun_diag_init(&d2);
	r = psktun_keys_load(path, true, &here, &d1);
	assert_int_equal(r, -EINVAL);
	assert_int_equal(psktun_keys_load_apart(path, true, NULL, &apart, &ch, &n, &known, &d2), r);
	assert_null(apart);
	assert_null(ch);
	assert_false(known);
	assert_int_equal(d1.n, 3);
	assert_int_equal(d2.n, d1.n);
	for (size_t i = 0; i < d1.n; i++)
		assert_string_equal(d2.line[i], d1.line[i]);
	psktun_diag_deinit(&d1);
	psktun_diag_deinit(&d2);
}

static void an_empty_or_missing_file_is_left_to_the_load_here(void **state)
{
	const char *empty = test_write_str("empty.psk", "", 0600);
	struct psktun_keys *k = NULL;
	struct psktun_key_change *ch = NULL;
	struct psktun_diag d;
	size_t n = 0;
	bool known;

	psktun_diag_init(&d);
	assert_int_equal(psktun_keys_load_apart(empty, true, NULL, &k, &ch, &n, &known, &d), PSKTUN_KEYS_NOT_APART);
	assert_int_equal(psktun_keys_load_apart(test_path("none.psk"), true, NULL, &k, &ch, &n, &known, &d),
			 PSKTUN_KEYS_NOT_APART);
	assert_null(k);
	assert_int_equal(d.n, 0);
	psktun_diag_deinit(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(gives_the_store_and_the_changes_a_load_here_gives, setup, teardown),
		cmocka_unit_test_setup_teardown(reports_the_problems_a_load_here_reports, setup, teardown),
		cmocka_unit_test_setup_teardown(an_empty_or_missing_file_is_left_to_the_load_here, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

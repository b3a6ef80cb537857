/* test_keys: the psktool key file: format, key lengths, permissions, duplicates, lookup, secrecy. */
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
#include "expect_diag.h"
#include "tmpdir.h"

#define KEY16 "00112233445566778899aabbccddeeff"
#define KEY32 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static const uint8_t key16[16] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};

static struct psktun_diag diag;
static struct psktun_keys *keys;
static const char *path;

static int setup(void **state)
{
	test_dir_make();
	psktun_diag_init(&diag);
	keys = NULL;
	return 0;
}

static int teardown(void **state)
{
	psktun_keys_free(keys);
	psktun_diag_deinit(&diag);
	test_dir_remove();
	return 0;
}

static int load(const char *text, mode_t mode)
{
	path = test_write_str("keys.psk", text, mode);
	return psktun_keys_load(path, true, &keys, &diag);
}

/* diag holds exactly these messages (expect_diag.h). */
#define expect_diag(...) expect_diag_of(&diag, path, __VA_ARGS__)

static const struct psktun_key *find(const char *id)
{
	return psktun_keys_find(keys, id, strlen(id));
}

static void loads_entries_skipping_comments_and_blank_lines(void **state)
{
	assert_int_equal(load("# psktool -u meter-0001 -p keys.psk\n"
			      "\n"
			      "meter-0002:" KEY32 "\n"
			      "   \t\n"
			      "  # indented comment\n"
			      "meter-0001:" KEY16 "\n", 0600), 0);
	expect_diag(0);
	assert_non_null(keys);
	assert_int_equal(keys->n, 2);
	assert_string_equal(keys->v[0].identity, "meter-0001");
	assert_int_equal(keys->v[0].identity_len, 10);
	assert_int_equal(keys->v[0].key_len, 16);
	assert_memory_equal(keys->v[0].key, key16, 16);
	assert_int_equal(keys->v[0].line, 6);
	assert_string_equal(keys->v[1].identity, "meter-0002");
	assert_int_equal(keys->v[1].key_len, 32);
	assert_int_equal(keys->v[1].key[31], 0x1f);
	assert_int_equal(keys->v[1].line, 3);
}

static void accepts_crlf_trailing_blanks_uppercase_hex_and_no_final_newline(void **state)
{
	assert_int_equal(load("a:00112233445566778899AABBCCDDEEFF\r\n"
			      "b:" KEY16 " \t\r\n"
			      "c:" KEY16, 0600), 0);
	expect_diag(0);
	assert_int_equal(keys->n, 3);
	assert_memory_equal(find("a")->key, key16, 16);
	assert_memory_equal(find("b")->key, key16, 16);
	assert_memory_equal(find("c")->key, key16, 16);
}

static void empty_file_is_an_empty_store(void **state)
{
	assert_int_equal(load("# nobody yet\n", 0600), 0);
	assert_int_equal(keys->n, 0);
	assert_null(find("meter-0001"));
}

static void find_matches_whole_identities_only(void **state)
{
	assert_int_equal(load("meter-1:" KEY16 "\nmeter-10:" KEY16 "\nmeter-2:" KEY16 "\nm:" KEY16 "\n",
			      0600), 0);
	assert_int_equal(keys->n, 4);
	assert_string_equal(find("meter-1")->identity, "meter-1");
	assert_string_equal(find("meter-10")->identity, "meter-10");
	assert_string_equal(find("m")->identity, "m");
	assert_null(find("meter-"));
	assert_null(find("meter-100"));
	assert_null(find("meter-3"));
	assert_null(find(""));
	/* A length, not a NUL, ends the identity: GnuTLS hands over counted bytes. */
	assert_string_equal(psktun_keys_find(keys, "meter-10xyz", 8)->identity, "meter-10");
	assert_null(psktun_keys_find(NULL, "m", 1));
}

static void keys_are_sorted_for_binary_search(void **state)
{
	char text[4096] = "";

	for (int i = 99; i >= 0; i--) {
		char line[64];

		FMT(line, "id%d:" KEY16 "\n", i * 7 % 100);
		strcat(text, line);
	}
	assert_int_equal(load(text, 0600), 0);
	assert_int_equal(keys->n, 100);
	for (size_t i = 1; i < keys->n; i++)
		assert_true(strcmp(keys->v[i - 1].identity, keys->v[i].identity) < 0);
	for (int i = 0; i < 100; i++) {
		char id[16];

		FMT(id, "id%d", i);
		assert_non_null(find(id));
	}
}

static void key_shorter_than_16_bytes_is_refused(void **state)
{
	assert_int_equal(load("ok:" KEY16 "\nshort:0011223344556677\n", 0600), -EINVAL);
	assert_null(keys);
	expect_diag(1, 2, "key for 'short' is 8 bytes; at least 16 are required");
}

static void key_longer_than_64_bytes_is_refused(void **state)
{
	assert_int_equal(load("long:" KEY32 KEY32 "00\n", 0600), -EINVAL);
	expect_diag(1, 1, "key for 'long' is 65 bytes; at most 64 are allowed");
}

static void odd_number_of_hex_digits_is_refused(void **state)
{
	assert_int_equal(load("odd:" KEY16 "0\n", 0600), -EINVAL);
	expect_diag(1, 1, "key for 'odd' has an odd number of hex digits");
}

static void non_hex_key_is_refused(void **state)
{
	assert_int_equal(load("\nnothex:" "0011223344556677889900aabbccddeg" "\n", 0600), -EINVAL);
	expect_diag(1, 2, "key for 'nothex' is not hexadecimal");
}

static void missing_colon_is_refused(void **state)
{
	assert_int_equal(load("meter-0001 " KEY16 "\n", 0600), -EINVAL);
	expect_diag(1, 1, "missing ':' between identity and key");
}

static void empty_identity_and_empty_key_are_refused(void **state)
{
	assert_int_equal(load(":" KEY16 "\nmeter:\n", 0600), -EINVAL);
	expect_diag(2, 1, "empty identity", 2, "empty key for 'meter'");
}

static void identity_with_colon_is_refused(void **state)
{
	/* psktool cannot write one: the second ':' lands in the key. */
	assert_int_equal(load("a:b:" KEY16 "\n", 0600), -EINVAL);
	expect_diag(1, 1, "key for 'a' is not hexadecimal");
}

static void identity_longer_than_128_bytes_or_with_control_characters_is_refused(void **state)
{
	char text[512];

	memset(text, 'x', 129);
	snprintf(text + 129, sizeof(text) - 129, ":" KEY16 "\nbell\a:" KEY16 "\n");
	assert_int_equal(load(text, 0600), -EINVAL);
	expect_diag(2, 1, "identity is longer than 128 bytes", 2, "identity contains a control character");
}

static void duplicate_identity_names_both_lines(void **state)
{
	assert_int_equal(load("meter-0001:" KEY16 "\n"
			      "meter-0002:" KEY16 "\n"
			      "# again\n"
			      "meter-0001:" KEY32 "\n", 0600), -EINVAL);
	expect_diag(1, 4, "duplicate identity 'meter-0001' (first at line 1)");
}

static void every_bad_line_is_reported_in_one_pass(void **state)
{
	assert_int_equal(load("a:00\n"
			      "good:" KEY16 "\n"
			      "b\n"
			      ":" KEY16 "\n"
			      "c:xyz\n", 0600), -EINVAL);
	expect_diag(4, 1, "key for 'a' is 1 byte; at least 16 are required",
		    3, "missing ':' between identity and key",
		    4, "empty identity",
		    5, "key for 'c' is not hexadecimal");
}

static void messages_never_quote_a_key(void **state)
{
	const char *secret = "5ec2e75ec2e75ec2e75ec2e75ec2e7";	/* 15 bytes: too short */

	char text[256];

	FMT(text, "m1:%s\nm2:%sz\nm3:%s0\nm1:%s%s\n", secret, secret, secret,
		 secret, "aa");
	assert_int_equal(load(text, 0600), -EINVAL);
	assert_true(diag.n >= 3);
	for (size_t i = 0; i < diag.n; i++)
		assert_null(strstr(diag.line[i], "5ec2e7"));
}

static void mode_0600_is_accepted(void **state)
{
	assert_int_equal(load("m:" KEY16 "\n", 0600), 0);
	expect_diag(0);
}

static void mode_0640_is_accepted_for_a_trusted_group(void **state)
{
	assert_int_equal(load("m:" KEY16 "\n", 0640), 0);
	expect_diag(0);
}

static void mode_0400_is_accepted(void **state)
{
	assert_int_equal(load("m:" KEY16 "\n", 0400), 0);
	expect_diag(0);
}

static void mode_0644_is_refused_with_the_fix(void **state)
{
	char msg[PATH_MAX + 1024];

	assert_int_equal(load("m:" KEY16 "\n", 0644), -EPERM);
	assert_null(keys);
	FMT(msg,
		 "key file is group-writable or open to others (mode 0644); run chmod 600 %s (or chmod 640 to share it with a trusted group)",
		 path);
	expect_diag(1, 0, msg);
}

static void mode_0620_group_writable_is_refused(void **state)
{
	assert_int_equal(load("m:" KEY16 "\n", 0620), -EPERM);
	assert_int_equal(diag.n, 1);
	assert_non_null(strstr(diag.line[0], "(mode 0620)"));
}

static void mode_0604_and_0601_are_refused(void **state)
{
	assert_int_equal(load("m:" KEY16 "\n", 0604), -EPERM);
	assert_int_equal(load("m:" KEY16 "\n", 0601), -EPERM);
	assert_int_equal(diag.n, 2);
	assert_non_null(strstr(diag.line[0], "(mode 0604)"));
	assert_non_null(strstr(diag.line[1], "(mode 0601)"));
}

static void mode_check_can_be_skipped(void **state)
{
	path = test_write_str("keys.psk", "m:" KEY16 "\n", 0666);
	assert_int_equal(psktun_keys_load(path, false, &keys, &diag), 0);
	assert_int_equal(keys->n, 1);
}

static void missing_file_is_enoent(void **state)
{
	path = test_path("nope.psk");
	assert_int_equal(psktun_keys_load(path, true, &keys, &diag), -ENOENT);
	assert_null(keys);
	expect_diag(1, 0, "cannot open key file: No such file or directory");
}

static void directory_is_not_a_key_file(void **state)
{
	path = test_dir;
	assert_int_equal(psktun_keys_load(path, true, &keys, &diag), -EINVAL);
	expect_diag(1, 0, "key file is not a regular file (it is a directory)");
}

/* A million meters are one allocation of names: identities stay right as it grows. */
static void many_identities_share_one_block_of_names(void **state)
{
	enum { N = 5000 };
	static char text[N * 48];
	char id[32];
	size_t len = 0;

	for (int i = N - 1; i >= 0; i--)	/* backwards: sorting moves every entry */
		len += (size_t)snprintf(text + len, sizeof(text) - len, "meter-%05d:" KEY16 "\n", i);
	assert_int_equal(load(text, 0600), 0);
	assert_int_equal(keys->n, N);
	assert_int_equal(keys->names_len, (size_t)N * 12);	/* "meter-NNNNN" and its NUL */
	for (int i = 0; i < N; i++) {
		const struct psktun_key *k;

		snprintf(id, sizeof(id), "meter-%05d", i);
		k = find(id);
		assert_non_null(k);
		assert_ptr_equal(k, &keys->v[i]);
		assert_string_equal(k->identity, id);
		assert_true(k->identity >= keys->names && k->identity < keys->names + keys->names_len);
		assert_int_equal(k->line, N - i);
		assert_memory_equal(k->key, key16, 16);
	}
}

/* A reload's changes: identities gone or with another key, in order; new ones are not changes. */
static void changed_lists_identities_gone_or_rekeyed_in_order(void **state)
{
	struct psktun_keys *now = NULL;
	struct psktun_key_change *ch;
	size_t n;

	assert_int_equal(load("a:" KEY16 "\nb:" KEY16 "\nbb:" KEY16 "\nc:" KEY16 "\nd:" KEY32 "\n", 0600), 0);
	path = test_write_str("new.psk", "aa:" KEY16 "\nb:" KEY32 "\nbb:" KEY16 "\nd:" KEY32 "\ne:" KEY16 "\n",
			      0600);
	assert_int_equal(psktun_keys_load(path, true, &now, &diag), 0);
	assert_int_equal(psktun_keys_changed(keys, now, &ch, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(ch[0].old->identity, "a");
	assert_true(ch[0].removed);
	assert_string_equal(ch[1].old->identity, "b");	/* 16 bytes, then 32: another key */
	assert_false(ch[1].removed);
	assert_string_equal(ch[2].old->identity, "c");
	assert_true(ch[2].removed);
	assert_ptr_equal(psktun_keys_change_find(ch, n, "b", 1), &ch[1]);
	assert_ptr_equal(psktun_keys_change_find(ch, n, "c", 1), &ch[2]);
	assert_null(psktun_keys_change_find(ch, n, "bb", 2));
	assert_null(psktun_keys_change_find(ch, n, "d", 1));
	assert_null(psktun_keys_change_find(ch, n, "", 0));
	free(ch);

	/* the same file again: nothing changed, nothing allocated */
	assert_int_equal(psktun_keys_changed(now, now, &ch, &n), 0);
	assert_int_equal(n, 0);
	assert_null(ch);
	/* an empty new store: every identity went */
	assert_int_equal(psktun_keys_changed(now, NULL, &ch, &n), 0);
	assert_int_equal(n, 5);
	assert_true(ch[0].removed && ch[4].removed);
	free(ch);
	psktun_keys_free(now);
}

static void free_null_is_fine(void **state)
{
	psktun_keys_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(loads_entries_skipping_comments_and_blank_lines),
		T(accepts_crlf_trailing_blanks_uppercase_hex_and_no_final_newline),
		T(empty_file_is_an_empty_store),
		T(find_matches_whole_identities_only),
		T(keys_are_sorted_for_binary_search),
		T(key_shorter_than_16_bytes_is_refused),
		T(key_longer_than_64_bytes_is_refused),
		T(odd_number_of_hex_digits_is_refused),
		T(non_hex_key_is_refused),
		T(missing_colon_is_refused),
		T(empty_identity_and_empty_key_are_refused),
		T(identity_with_colon_is_refused),
		T(identity_longer_than_128_bytes_or_with_control_characters_is_refused),
		T(duplicate_identity_names_both_lines),
		T(every_bad_line_is_reported_in_one_pass),
		T(messages_never_quote_a_key),
		T(mode_0600_is_accepted),
		T(mode_0640_is_accepted_for_a_trusted_group),
		T(mode_0400_is_accepted),
		T(mode_0644_is_refused_with_the_fix),
		T(mode_0620_group_writable_is_refused),
		T(mode_0604_and_0601_are_refused),
		T(mode_check_can_be_skipped),
		T(missing_file_is_enoent),
		T(directory_is_not_a_key_file),
		T(many_identities_share_one_block_of_names),
		T(changed_lists_identities_gone_or_rekeyed_in_order),
		T(free_null_is_fine),
#undef T
	};

	return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}

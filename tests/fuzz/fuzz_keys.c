/* libFuzzer target for the key file loader: a loaded store is sorted, complete and findable; a refused one says why. */
/*
 * tests/fuzz/build.sh builds it (clang -fsanitize=fuzzer,address,undefined).
 * With -DFUZZ_STANDALONE (any compiler) it runs the files named on the
 * command line once each, to replay a corpus or a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/diag.c"
#include "../../agent/keys.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *input_path(void)
{
	static char path[64];
	int fd;

	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/fuzz_keys.%ld.XXXXXX", (long)getpid());
		fd = mkstemp(path);	/* mode 0600: the permission check passes */
		if (fd < 0)
			abort();
		close(fd);
	}
	return path;
}

static void write_input(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "w");

	if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = input_path();
	struct psktun_keys *k = (void *)1;
	struct psktun_diag d;
	int r;

	write_input(path, data, size);
	psktun_diag_init(&d);
	r = psktun_keys_load(path, true, &k, &d);
	if (r == 0) {
		if (!k || d.n)
			abort();
		for (size_t i = 0; i < k->n; i++) {
			const struct psktun_key *e = &k->v[i];

			if (e->key_len < PSKTUN_KEY_MIN || e->key_len > PSKTUN_KEY_MAX ||
			    e->identity_len == 0 || e->identity_len > PSKTUN_IDENTITY_MAX ||
			    strlen(e->identity) != e->identity_len || memchr(e->identity, ':', e->identity_len))
				abort();
			if (i && key_cmp(k->v[i - 1].identity, k->v[i - 1].identity_len,
					 e->identity, e->identity_len) >= 0)
				abort();	/* sorted, no duplicates */
			if (psktun_keys_find(k, e->identity, e->identity_len) != e)
				abort();
			if (e->identity_len > 1 && psktun_keys_find(k, e->identity, e->identity_len - 1) &&
			    psktun_keys_find(k, e->identity, e->identity_len - 1)->identity_len != e->identity_len - 1)
				abort();
		}
	} else if (k || d.n == 0) {
		abort();
	}
	psktun_keys_free(k);
	psktun_diag_deinit(&d);
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		static uint8_t buf[1 << 20];
		FILE *f = fopen(argv[i], "rb");
		size_t n;

		if (!f) {
			perror(argv[i]);
			return 1;
		}
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
	}
	unlink(input_path());
	return 0;
}
#endif

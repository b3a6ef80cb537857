/* libFuzzer target for the configuration loader: any file either loads with no problem reported or fails with at least one. */
/*
 * tests/fuzz/build.sh builds it (clang -fsanitize=fuzzer,address,undefined).
 * With -DFUZZ_STANDALONE (any compiler) it runs the files named on the
 * command line once each, to replay a corpus or a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../agent/diag.c"
#include "../../agent/addr.c"
#include "../../agent/keys.c"
#include "../../agent/config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *input_path(void)
{
	static char path[64];
	int fd;

	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/fuzz_config.%ld.XXXXXX", (long)getpid());
		fd = mkstemp(path);
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
	struct psktun_keys empty = { 0 };
	struct psktun_config *c = (void *)1;
	struct psktun_diag d;
	int r;

	/* libconfig's @include would read whatever file the input names (/dev/stdin, ...). */
	if (memchr(data, '@', size))
		return 0;
	write_input(path, data, size);
	psktun_diag_init(&d);
	r = psktun_config_load(path, &c, &d);
	if (r == 0) {
		if (!c || d.n || !c->n_tunnels || !c->keys || !c->plugin_dir)
			abort();
		for (size_t i = 0; i < c->n_tunnels; i++)
			if (!c->tunnels[i].name || !c->tunnels[i].accept || !c->tunnels[i].connect)
				abort();
		/* With no keys at all, every meter is reported. */
		if (psktun_config_check_keys(c, &empty, &d) != (c->n_meters ? -EINVAL : 0) ||
		    d.n + d.lost != c->n_meters)
			abort();
	} else if (c || d.n == 0) {
		abort();
	}
	psktun_config_free(c);
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

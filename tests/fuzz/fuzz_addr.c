/* libFuzzer target for address parsing: whatever parses, formats back to text that parses to an equal address. */
/*
 * tests/fuzz/build.sh builds it (clang -fsanitize=fuzzer,address,undefined).
 * With -DFUZZ_STANDALONE (any compiler) it runs the files named on the
 * command line once each, to replay a corpus or a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/addr.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[256], fmt[PSKTUN_ADDRSTRLEN], host[128], port[8];
	struct sockaddr_storage a, b;
	bool has_port;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	if (psktun_hostport_split(s, host, sizeof(host), port, sizeof(port)) == 0 &&
	    (!host[0] || !port[0] || strchr(port, ':')))
		abort();
	if (psktun_addr_parse(s, false, &a, &has_port) < 0)
		return 0;
	if (has_port != (psktun_addr_parse(s, true, &b, NULL) == 0))
		abort();
	psktun_addr_format((struct sockaddr *)&a, fmt, sizeof(fmt));
	if (psktun_addr_parse(fmt, false, &b, NULL) < 0 && has_port)
		abort();	/* port 0 (none given) does not parse back */
	if (has_port) {
		if (!psktun_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&b, true) ||
		    psktun_addr_hash((struct sockaddr *)&a, true) != psktun_addr_hash((struct sockaddr *)&b, true))
			abort();
	}
	if (!psktun_addr_equal((struct sockaddr *)&a, (struct sockaddr *)&a, false))
		abort();
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		static uint8_t buf[4096];
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
	return 0;
}
#endif

/* libFuzzer target for the CoAP parser: parse, walk the options, re-encode them and check the round trip. */
/*
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -I plugins/coap \
 *	tests/fuzz/fuzz_coap.c -o fuzz_coap && ./fuzz_coap -max_total_time=600
 * With -DFUZZ_STANDALONE (any compiler) it runs the files named on the
 * command line once each, to replay a corpus or a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/coap/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[65536 + 1024];
	struct coap_opt_iter it;
	struct coap_msg m, m2;
	struct coap_opt o;
	uint16_t prev = 0;
	size_t pos;
	int n;

	if (coap_parse(&m, data, size) < 0)
		return 0;
	n = coap_write_header(out, sizeof(out), m.type, m.code, m.mid, m.token,
			      m.tkl);
	if (n < 0)
		abort();
	pos = (size_t)n;
	coap_opt_iter_init(&it, &m);
	while (coap_opt_next(&it, &o)) {
		if ((size_t)(o.value - data) + o.len > size)
			abort();
		if (coap_write_option(out, sizeof(out), &pos, &prev, o.number,
				      o.value, o.len) < 0)
			abort();
	}
	if (m.payload != NULL) {
		if (pos + 1 + m.payload_len > sizeof(out))
			return 0;
		out[pos++] = COAP_PAYLOAD_MARKER;
		memcpy(out + pos, m.payload, m.payload_len);
		pos += m.payload_len;
	}
	/* The option encoding is canonical (each extended form starts where
	 * the shorter one ends), so re-encoding gives back the input. */
	if (pos != size || memcmp(out, data, size) != 0 ||
	    coap_parse(&m2, out, pos) < 0)
		abort();
	if (m2.type != m.type || m2.code != m.code || m2.mid != m.mid ||
	    m2.tkl != m.tkl || m2.payload_len != m.payload_len)
		abort();
	return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv)
{
	static uint8_t buf[65536];

	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		size_t len;

		if (f == NULL) {
			perror(argv[i]);
			return 1;
		}
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
	}
	return 0;
}
#endif

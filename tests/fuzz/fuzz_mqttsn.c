/* fuzz_mqttsn: libFuzzer target over the MQTT-SN parser and the encapsulation wrapper. */
/*
 * Build and run (from the source tree):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iplugins \
 *	tests/fuzz/fuzz_mqttsn.c -o fuzz_mqttsn
 *   ./fuzz_mqttsn -max_total_time=60
 * The parser is #included, so the fuzzer needs no build tree.
 */
#include <assert.h>
#include <string.h>

#include "../../plugins/mqttsn/parse.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[65536 + 512];
	struct mqttsn_msg m, again;
	int n;

	if (mqttsn_parse(data, size, &m) < 0)
		return 0;
	/* Whatever parses points inside the input and says what it is. */
	assert(mqttsn_type_name(m.type)[0] != '?');
	if (m.client_id)
		assert(m.client_id >= data && m.client_id + m.client_id_len <= data + size);
	if (m.topic)
		assert(m.topic >= data && m.topic + m.topic_len <= data + size);
	if (m.data)
		assert(m.data >= data && m.data + m.data_len <= data + size);
	if (m.type == MQTTSN_ENCAPSULATED) {
		assert(m.inner + m.inner_len == data + size);
		return 0;
	}
	assert(m.len == size);
	/* Wrapping any valid message gives a valid encapsulation of it. */
	if (size > sizeof(buf) - 256)
		return 0;
	memcpy(buf, data, size);
	n = mqttsn_encap_wrap(buf, size, sizeof(buf), 1, (const uint8_t *)"node", 4);
	assert(n == (int)size + 7);
	assert(mqttsn_parse(buf, (size_t)n, &again) == 0);
	assert(again.type == MQTTSN_ENCAPSULATED && again.inner_len == size);
	assert(memcmp(again.inner, data, size) == 0);
	return 0;
}

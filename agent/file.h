/* file: opens the files the daemon reads (configuration, keys) without ever blocking on one. */
#ifndef PSKTUN_FILE_H
#define PSKTUN_FILE_H
#include <sys/stat.h>

/*
 * Opens `path` read-only without blocking: a FIFO would hang open() until a
 * writer came, and each read after it (psktund -n, a reload, a worker). Refuses
 * anything but a regular file. Returns the fd (O_CLOEXEC; blocking mode back
 * on, which a regular file ignores anyway) with *st filled in, or a negative
 * errno: from open() or fstat(), or -EINVAL for a file that is not regular
 * (then *st tells which kind: psktun_file_kind()).
 */
int psktun_file_open(const char *path, struct stat *st);

/* "a FIFO", "a directory", "a socket", "a character device", ... */
const char *psktun_file_kind(mode_t mode);
#endif

/* genkey: psktunctl genkey, new key file lines for one meter or a fleet. */
#ifndef PSKTUN_GENKEY_H
#define PSKTUN_GENKEY_H

/* argv[0] is "genkey"; returns the exit status (0, 1: failed, 2: usage). */
int psktunctl_genkey(int argc, char **argv);
#endif

/*
 * hash.h - keyed hashing and randomness for the segment layer (shm/hash.c).
 */
#ifndef SC_SHM_HASH_H
#define SC_SHM_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of data under the 128-bit key k. */
uint64_t sc_siphash(const uint64_t k[2], const void *data, size_t len);
/* len bytes from getrandom(); 0 or -errno. */
int sc_random_bytes(void *buf, size_t len);
/* Lowercase hex of in[0..n) into out[0..2n], NUL-terminated. */
void sc_hex(const void *in, size_t n, char *out);

#endif

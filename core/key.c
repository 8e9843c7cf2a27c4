/*
 * key.c - key digests, keyed hashes and payload checksums.
 *
 * A key digest is SHA-256 over a length-prefixed encoding of (namespace,
 * key string), so no two (ns, key) pairs share an encoding and different
 * namespaces can never produce the same key.  Bucket choice and scope tags
 * use SipHash-2-4 keyed with the segment's random secret, so nobody who
 * does not hold the segment can aim requests at one bucket (hash flooding).
 * The payload checksum is a fast non-cryptographic hash: it catches torn
 * and corrupted payloads, it is no defence against an adversary (the
 * segment is writable by every attached process anyway).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v; /* little-endian hosts only, as shm/layout.h states */
}

/* ------------------------------------------------------------------------
 * SHA-256 through libcrypto.  EVP_sha256() would implicitly fetch the
 * algorithm on every init; fetch it once and keep one context per thread.
 * ---------------------------------------------------------------------- */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha256;
static pthread_key_t md_ctx_key;
static _Thread_local EVP_MD_CTX *md_ctx;

static void md_ctx_free(void *p) { EVP_MD_CTX_free(p); }

static void md_init(void)
{
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	(void)pthread_key_create(&md_ctx_key, md_ctx_free);
}

static void put_len(uint8_t *b, size_t n)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(n >> (8 * i));
}

int sc_key_digest(const char *ns, const char *key, uint8_t out[32])
{
	static const char domain[] = "semcache/key/1";
	size_t ns_len = strlen(ns), key_len = strlen(key);
	unsigned int olen = 0;

	pthread_once(&md_once, md_init);
	if (!md_sha256)
		return -ENOSYS;
	if (!md_ctx) {
		md_ctx = EVP_MD_CTX_new();
		if (!md_ctx)
			return -ENOMEM;
		(void)pthread_setspecific(md_ctx_key, md_ctx);
	}
	if (!EVP_DigestInit_ex2(md_ctx, md_sha256, NULL))
		return -EIO;
	/* Each EVP call has a fixed cost comparable to hashing a block, so
	 * short keys are encoded into one buffer and hashed in one update. */
	uint8_t buf[256];
	size_t need = sizeof domain - 1 + 16 + ns_len + key_len;
	if (need <= sizeof buf) {
		uint8_t *p = buf;
		memcpy(p, domain, sizeof domain - 1);
		p += sizeof domain - 1;
		put_len(p, ns_len);
		memcpy(p + 8, ns, ns_len);
		p += 8 + ns_len;
		put_len(p, key_len);
		memcpy(p + 8, key, key_len);
		EVP_DigestUpdate(md_ctx, buf, need);
	} else {
		uint8_t len[8];
		EVP_DigestUpdate(md_ctx, domain, sizeof domain - 1);
		put_len(len, ns_len);
		EVP_DigestUpdate(md_ctx, len, 8);
		EVP_DigestUpdate(md_ctx, ns, ns_len);
		put_len(len, key_len);
		EVP_DigestUpdate(md_ctx, len, 8);
		EVP_DigestUpdate(md_ctx, key, key_len);
	}
	if (!EVP_DigestFinal_ex(md_ctx, out, &olen) || olen != 32)
		return -EIO;
	return 0;
}

uint64_t sc_ns_hash(const semcache *c, const char *ns, size_t ns_len)
{
	uint64_t k[2] = { c->secret[0] ^ UINT64_C(0x6e73), c->secret[1] };
	return sc_siphash(k, ns, ns_len);
}

/*
 * Scope tag: hash of (ns, scope) with the namespace length-prefixed, so the
 * namespace always takes part and ("a", "bc") differs from ("ab", "c").
 * 0 is reserved for "no row", so a zero hash is mapped to 1.
 */
uint64_t sc_scope_tag(const semcache *c, const char *ns, size_t ns_len,
                      const char *scope, size_t scope_len)
{
	uint64_t k[2] = { c->secret[0] ^ UINT64_C(0x73636f7065), c->secret[1] };
	uint64_t h = sc_siphash(k, &ns_len, sizeof ns_len);
	uint64_t k2[2] = { k[0] ^ h, k[1] };
	h = sc_siphash(k2, ns, ns_len);
	uint64_t k3[2] = { k[0] ^ h, k[1] + 1 };
	h = sc_siphash(k3, scope, scope_len);
	return h ? h : 1;
}

/*
 * Payload checksum: four independent multiply-xorshift lanes over 32-byte
 * strides, so a 1 KB payload costs about as many cycles as it has words
 * divided by the lanes, not a serial multiply chain.  It can be computed
 * over a chain of blocks in place (block sizes are multiples of 32): every
 * block but the last goes through sc_csum_strides, the last through
 * sc_csum_final; the result equals sc_checksum of the bytes laid end to end.
 */
#define CSUM_M UINT64_C(0x9e3779b97f4a7c15)

void sc_csum_init(sc_csum *st, size_t total_len)
{
	st->a = total_len;
	st->b = ~(uint64_t)total_len;
	st->c = UINT64_C(0x243f6a8885a308d3);
	st->d = 0;
}

void sc_csum_strides(sc_csum *st, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t a = st->a, b = st->b, cc = st->c, d = st->d;
	for (size_t i = 0; i + 32 <= len; i += 32) {
		a = (a ^ load_le64(p + i)) * CSUM_M; a ^= a >> 29;
		b = (b ^ load_le64(p + i + 8)) * CSUM_M; b ^= b >> 29;
		cc = (cc ^ load_le64(p + i + 16)) * CSUM_M; cc ^= cc >> 29;
		d = (d ^ load_le64(p + i + 24)) * CSUM_M; d ^= d >> 29;
	}
	st->a = a;
	st->b = b;
	st->c = cc;
	st->d = d;
}

uint32_t sc_csum_final(sc_csum *st, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i = len & ~(size_t)31;
	sc_csum_strides(st, p, i);
	uint64_t a = st->a, b = st->b;
	for (; i + 8 <= len; i += 8) {
		a = (a ^ load_le64(p + i)) * CSUM_M;
		a ^= a >> 29;
	}
	uint64_t t = 0;
	for (size_t j = 0; i + j < len; j++)
		t |= (uint64_t)p[i + j] << (8 * j);
	b = (b ^ t) * CSUM_M;
	uint64_t h = a ^ rotl(b, 17) ^ rotl(st->c, 31) ^ rotl(st->d, 47);
	h *= CSUM_M;
	h ^= h >> 32;
	return (uint32_t)h;
}

uint32_t sc_checksum(const void *data, size_t len)
{
	sc_csum st;
	sc_csum_init(&st, len);
	return sc_csum_final(&st, data, len);
}

/* header_alone.c - the public header compiles on its own (C11), with no
 * other include before it, and its types are usable as documented. */
#include "semcache.h"

int main(void)
{
	semcache_options o;
	semcache_options_init(&o);
	semcache_put_args a = { .ns = "n", .key = "k" };
	semcache_ref ref;
	(void)a;
	(void)ref;
	return o.slots == 65536 && semcache_strerror(SEMCACHE_ENOTFOUND)[0] ? 0 : 1;
}

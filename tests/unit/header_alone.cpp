// header_alone.cpp - the public header compiles on its own as C++ and links
// against the C library (extern "C" linkage is right).
#include "semcache.h"

int main()
{
	semcache_options o;
	semcache_options_init(&o);
	semcache_stats st = semcache_stats();
	(void)st;
	return o.dim == 384 && semcache_strerror(SEMCACHE_EFULL)[0] ? 0 : 1;
}

/*
 * test_request.c - semcache_request_key(): exact keys and semantic scopes.
 *
 * The key must separate every pair of requests that could get different
 * answers (any field, message boundaries, unset vs zero temperature) and the
 * scope must group paraphrases while keeping apart models, tool sets, tool
 * choices and temperature buckets.  Only the public header is used, so these
 * tests also pin the documented contract (key prefix, error codes).
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <criterion/criterion.h>
#include <stdio.h>

#include "semcache.h"

/* A request with its own message storage, easy to copy and mutate. */
typedef struct {
	semcache_message msg[3];
	semcache_request r;
} req_fixture;

static void fixture_init(req_fixture *f)
{
	memset(f, 0, sizeof *f);
	f->msg[0] = (semcache_message){ "system", "You are terse." };
	f->msg[1] = (semcache_message){ "user", "What is the capital of France?" };
	f->msg[2] = (semcache_message){ "assistant", "Paris." };
	f->r.model = "demo-model";
	f->r.messages = f->msg;
	f->r.n_messages = 2;
	f->r.temperature = 0.2;
	f->r.max_tokens = 128;
	f->r.tools = "[{\"type\":\"function\",\"name\":\"lookup\"}]";
	f->r.tool_choice = "auto";
}

typedef struct {
	char key[SEMCACHE_KEY_LEN];
	char scope[SEMCACHE_SCOPE_LEN];
} req_out;

static req_out build(const semcache_request *r)
{
	req_out o;

	memset(&o, 0x5a, sizeof o);
	int rc = semcache_request_key(r, o.key, o.scope, sizeof o.scope);
	cr_assert_eq(rc, 0, "semcache_request_key: %d", rc);
	return o;
}

static void assert_key_differs(const req_out *a, const req_out *b, const char *what)
{
	cr_expect_str_neq(a->key, b->key, "changing %s must change the key", what);
}

Test(request, same_request_same_key)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	/* Equal contents in different storage: the key depends on bytes only. */
	char content[] = "What is the capital of France?";
	g.msg[1].content = content;
	req_out a = build(&f.r), b = build(&g.r), c = build(&f.r);
	cr_expect_str_eq(a.key, b.key);
	cr_expect_str_eq(a.key, c.key);
	cr_expect_str_eq(a.scope, b.scope);
}

Test(request, key_starts_with_model_and_hex_digest)
{
	req_fixture f;

	fixture_init(&f);
	req_out a = build(&f.r);
	size_t mlen = strlen("demo-model:");
	cr_assert_eq(strncmp(a.key, "demo-model:", mlen), 0, "key %s", a.key);
	cr_expect_eq(strlen(a.key), mlen + 64);
	cr_expect_eq(strspn(a.key + mlen, "0123456789abcdef"), 64);
}

Test(request, any_field_change_changes_key)
{
	req_fixture f;

	fixture_init(&f);
	req_out base = build(&f.r);

	/* Each change on a fresh copy of the fixture. */
	for (int i = 0; i < 11; i++) {
		req_fixture g;
		const char *what = "";

		fixture_init(&g);
		switch (i) {
		case 0: g.r.model = "demo-model-2"; what = "model"; break;
		case 1: g.msg[0].role = "developer"; what = "a role"; break;
		case 2: g.msg[1].content = "What is the capital of Spain?"; what = "a content"; break;
		case 3: g.r.n_messages = 3; what = "the message count"; break;
		case 4: g.r.temperature = 0.3; what = "temperature"; break;
		case 5: g.r.max_tokens = 129; what = "max_tokens"; break;
		case 6: g.r.max_tokens = -1; what = "max_tokens (unset)"; break;
		case 7: g.r.tools = "[]"; what = "tools"; break;
		case 8: g.r.tools = NULL; what = "tools (absent)"; break;
		case 9: g.r.tool_choice = "none"; what = "tool_choice"; break;
		case 10: g.r.tool_choice = NULL; what = "tool_choice (absent)"; break;
		}
		req_out o = build(&g.r);
		assert_key_differs(&base, &o, what);
	}
}

Test(request, message_order_changes_key)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	g.msg[0] = f.msg[1];
	g.msg[1] = f.msg[0];
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);
}

Test(request, message_boundaries_do_not_collide)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	f.msg[0] = (semcache_message){ "user", "ab" };
	f.msg[1] = (semcache_message){ "user", "c" };
	g.msg[0] = (semcache_message){ "user", "a" };
	g.msg[1] = (semcache_message){ "user", "bc" };
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_neq(a.key, b.key, "[\"ab\",\"c\"] vs [\"a\",\"bc\"]");

	/* Role and content boundaries too: ("us","eruser") vs ("user","user"). */
	f.msg[0] = (semcache_message){ "us", "eruser" };
	g.msg[0] = (semcache_message){ "user", "user" };
	f.msg[1] = g.msg[1] = (semcache_message){ "user", "x" };
	a = build(&f.r);
	b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);

	/* One message "a" + "" vs a single message: the count is encoded. */
	f.msg[0] = (semcache_message){ "user", "a" };
	f.msg[1] = (semcache_message){ "user", "" };
	g.msg[0] = (semcache_message){ "user", "a" };
	g.r.n_messages = 1;
	a = build(&f.r);
	b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);
}

Test(request, empty_and_absent_tools_differ)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	f.r.tools = "";
	g.r.tools = NULL;
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);
	cr_expect_str_neq(a.scope, b.scope);
}

Test(request, temperature_unset_and_zero_differ_in_key_and_scope)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	f.r.temperature = NAN;
	g.r.temperature = 0.0;
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);
	cr_expect_str_neq(a.scope, b.scope);
}

Test(request, negative_zero_temperature_equals_zero)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	f.r.temperature = 0.0;
	g.r.temperature = -0.0;
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_eq(a.key, b.key);
	cr_expect_str_eq(a.scope, b.scope);
}

Test(request, scope_same_for_paraphrased_messages)
{
	req_fixture f, g;

	fixture_init(&f);
	fixture_init(&g);
	g.msg[1].content = "Which city is the capital of France?";
	g.r.max_tokens = 64;
	g.r.temperature = 0.4; /* same bucket as 0.2 */
	req_out a = build(&f.r), b = build(&g.r);
	cr_expect_str_neq(a.key, b.key);
	cr_expect_str_eq(a.scope, b.scope);
}

Test(request, scope_differs_across_system_prompts)
{
	req_fixture f, g, h;

	fixture_init(&f);
	fixture_init(&g);
	fixture_init(&h);
	cr_assert_str_eq(f.msg[0].role, "system");
	g.msg[0].content = "You are a pirate. Answer in pirate speak.";
	h.msg[0].role = "user"; /* no system message at all */
	req_out a = build(&f.r), b = build(&g.r), c = build(&h.r);
	cr_expect_str_neq(a.scope, b.scope, "another system prompt shares the scope");
	cr_expect_str_neq(a.scope, c.scope, "no system prompt shares the scope");
	cr_expect(strstr(c.scope, ";s=-;") != NULL, "absent system prompt not marked: %s", c.scope);
}

Test(request, scope_differs_across_model_tools_choice_and_temperature_bucket)
{
	req_fixture f;

	fixture_init(&f);
	req_out base = build(&f.r);

	for (int i = 0; i < 7; i++) {
		req_fixture g;

		fixture_init(&g);
		switch (i) {
		case 0: g.r.model = "other-model"; break;
		case 1: g.r.tools = "[{\"type\":\"function\",\"name\":\"search\"}]"; break;
		case 2: g.r.tools = NULL; break;
		case 3: g.r.tool_choice = "required"; break;
		case 4: g.r.tool_choice = NULL; break;
		case 5: g.r.temperature = 0.9; break;
		case 6: g.r.temperature = 1.5; break;
		}
		req_out o = build(&g.r);
		cr_expect_str_neq(base.scope, o.scope, "case %d: %s", i, o.scope);
	}
}

Test(request, temperature_buckets_are_distinct)
{
	const double temps[] = { NAN, 0.0, 0.5, 1.0, 2.0 };
	req_out o[5];

	for (int i = 0; i < 5; i++) {
		req_fixture f;

		fixture_init(&f);
		f.r.temperature = temps[i];
		o[i] = build(&f.r);
	}
	for (int i = 0; i < 5; i++)
		for (int j = i + 1; j < 5; j++)
			cr_expect_str_neq(o[i].scope, o[j].scope, "%d vs %d", i, j);

	/* Bucket edges: 0.5 and 0.01 share a bucket, as do 1.0 and 0.51. */
	req_fixture f;
	fixture_init(&f);
	f.r.temperature = 0.01;
	req_out lo = build(&f.r);
	cr_expect_str_eq(lo.scope, o[2].scope);
	f.r.temperature = 0.51;
	req_out mid = build(&f.r);
	cr_expect_str_eq(mid.scope, o[3].scope);
}

Test(request, scope_starts_with_model)
{
	req_fixture f;

	fixture_init(&f);
	req_out a = build(&f.r);
	cr_expect_eq(strncmp(a.scope, "m=demo-model;", 13), 0, "scope %s", a.scope);
}

Test(request, bad_args_are_einval)
{
	req_fixture f;
	char key[SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN];
	char longmodel[200];

	memset(longmodel, 'm', sizeof longmodel - 1);
	longmodel[sizeof longmodel - 1] = '\0';

	fixture_init(&f);
	cr_expect_eq(semcache_request_key(NULL, key, scope, sizeof scope), -EINVAL);
	cr_expect_eq(semcache_request_key(&f.r, NULL, scope, sizeof scope), -EINVAL);
	cr_expect_eq(semcache_request_key(&f.r, key, NULL, sizeof scope), -EINVAL);

	for (int i = 0; i < 11; i++) {
		fixture_init(&f);
		switch (i) {
		case 0: f.r.model = NULL; break;
		case 1: f.r.model = longmodel; break;
		case 2: f.r.messages = NULL; break;
		case 3: f.r.n_messages = 0; break;
		case 4: f.r.n_messages = 65537; break;
		case 5: f.msg[1].role = NULL; break;
		case 6: f.msg[0].content = NULL; break;
		case 7: f.r.temperature = -0.1; break;
		case 8: f.r.temperature = INFINITY; break;
		case 9: f.r.temperature = -INFINITY; break;
		case 10: f.r.reserved_[2] = 1; break; /* a newer header's field */
		}
		cr_expect_eq(semcache_request_key(&f.r, key, scope, sizeof scope), -EINVAL,
		             "case %d", i);
	}
}

Test(request, longest_model_fits_key)
{
	req_fixture f;
	char model[128];

	memset(model, 'm', 127);
	model[127] = '\0';
	fixture_init(&f);
	f.r.model = model;
	req_out a = build(&f.r);
	cr_expect_eq(strlen(a.key), 127 + 1 + 64);
	cr_expect_eq(strncmp(a.key, model, 127), 0);
	cr_expect_eq(a.key[127], ':');
}

Test(request, small_scope_buffer_is_enametoolong)
{
	req_fixture f;
	char key[SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN];

	fixture_init(&f);
	req_out a = build(&f.r);
	size_t need = strlen(a.scope) + 1;

	cr_expect_eq(semcache_request_key(&f.r, key, scope, 0), -ENAMETOOLONG);
	cr_expect_eq(semcache_request_key(&f.r, key, scope, need - 1), -ENAMETOOLONG);
	cr_expect_eq(semcache_request_key(&f.r, key, scope, need), 0);
	cr_expect_str_eq(scope, a.scope);
	cr_expect_str_eq(key, a.key);
}

/* ------------------------------------------------------------------------
 * semcache_request_key_json: the whole request body
 * ---------------------------------------------------------------------- */
static void jkey(const char *body, char key[SEMCACHE_KEY_LEN], char scope[SEMCACHE_SCOPE_LEN])
{
	int rc = semcache_request_key_json(body, strlen(body), key, scope, SEMCACHE_SCOPE_LEN);
	cr_assert_eq(rc, 0, "%s: %s", body, semcache_strerror(rc));
}

#define JBASE "\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"}," \
              "{\"role\":\"user\",\"content\":\"capital of France?\"}]"

Test(request_json, formatting_key_order_and_number_spelling_do_not_matter)
{
	char k1[SEMCACHE_KEY_LEN], k2[SEMCACHE_KEY_LEN], s1[SEMCACHE_SCOPE_LEN], s2[SEMCACHE_SCOPE_LEN];
	jkey("{" JBASE ",\"temperature\":1,\"top_p\":0.5}", k1, s1);
	jkey("{ \"top_p\" : 5e-1 ,\n \"temperature\": 1.0, " JBASE " }", k2, s2);
	cr_assert_str_eq(k1, k2);
	cr_assert_str_eq(s1, s2);
	cr_assert(strncmp(k1, "gpt-x:", 6) == 0 && strlen(k1) == 6 + 64, "%s", k1);
}

Test(request_json, every_answer_changing_field_changes_the_key)
{
	static const char *const extra[] = {
		"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\"}}",
		"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"b\"}}",
		"\"top_p\":0.9", "\"seed\":7", "\"stop\":[\"\\n\"]", "\"n\":2",
		"\"presence_penalty\":0.5", "\"frequency_penalty\":0.5", "\"logit_bias\":{\"50256\":-100}",
		"\"logprobs\":true", "\"max_tokens\":5", "\"max_completion_tokens\":5",
		"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]", "\"tool_choice\":\"none\"",
		"\"temperature\":0.2", "\"some_future_field\":1",
	};
	enum { N = sizeof extra / sizeof extra[0] };
	char keys[N + 1][SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN], body[1024];
	jkey("{" JBASE "}", keys[N], scope);
	for (int i = 0; i < N; i++) {
		snprintf(body, sizeof body, "{" JBASE ",%s}", extra[i]);
		jkey(body, keys[i], scope);
		for (int j = 0; j <= i; j++)
			if (j != i)
				cr_assert_str_neq(keys[i], keys[j], "%s and %s share a key", extra[i], extra[j]);
		cr_assert_str_neq(keys[i], keys[N], "%s left the key unchanged", extra[i]);
	}
}

Test(request_json, message_parts_names_and_tool_calls_change_the_key)
{
	static const char *const msgs[] = {
		"[{\"role\":\"user\",\"content\":\"hi\"}]",
		"[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]",
		"[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
		"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]}]",
		"[{\"role\":\"user\",\"name\":\"ann\",\"content\":\"hi\"}]",
		"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
		"\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"1\"}]",
		"[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
		"\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"1\"}]",
	};
	enum { N = sizeof msgs / sizeof msgs[0] };
	char keys[N][SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN], body[1024];
	for (int i = 0; i < N; i++) {
		snprintf(body, sizeof body, "{\"model\":\"m\",\"messages\":%s}", msgs[i]);
		jkey(body, keys[i], scope);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(keys[i], keys[j], "messages %d and %d share a key", i, j);
	}
}

Test(request_json, fields_that_cannot_change_the_answer_are_left_out)
{
	char k1[SEMCACHE_KEY_LEN], k2[SEMCACHE_KEY_LEN], s1[SEMCACHE_SCOPE_LEN], s2[SEMCACHE_SCOPE_LEN];
	jkey("{" JBASE "}", k1, s1);
	jkey("{" JBASE ",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"user\":\"u1\","
	     "\"metadata\":{\"a\":1},\"store\":true,\"cache\":{\"no-cache\":true}}", k2, s2);
	cr_assert_str_eq(k1, k2);
	cr_assert_str_eq(s1, s2);
}

Test(request_json, a_paraphrase_shares_the_scope_but_not_the_key)
{
	char k1[SEMCACHE_KEY_LEN], k2[SEMCACHE_KEY_LEN], k3[SEMCACHE_KEY_LEN];
	char s1[SEMCACHE_SCOPE_LEN], s2[SEMCACHE_SCOPE_LEN], s3[SEMCACHE_SCOPE_LEN];
	jkey("{" JBASE "}", k1, s1);
	jkey("{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
	     "{\"role\":\"user\",\"content\":\"what is France's capital?\"}]}", k2, s2);
	jkey("{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"be verbose\"},"
	     "{\"role\":\"user\",\"content\":\"capital of France?\"}]}", k3, s3);
	cr_assert_str_neq(k1, k2);
	cr_assert_str_eq(s1, s2, "a paraphrase of the last user message must share the scope");
	cr_assert_str_neq(s1, s3, "another system prompt must not share the scope");
}

Test(request_json, malformed_bodies_are_einval)
{
	static const char *const bad[] = {
		"", "[]", "{\"model\":\"m\"}", "{\"messages\":[{\"role\":\"user\"}]}",
		"{\"model\":\"\",\"messages\":[{\"role\":\"user\"}]}",
		"{\"model\":\"m\",\"messages\":[]}", "{\"model\":\"m\",\"messages\":[1]}",
		"{\"model\":\"m\",\"model\":\"n\",\"messages\":[{\"role\":\"user\"}]}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]", "\xff\xfe",
	};
	char key[SEMCACHE_KEY_LEN], scope[SEMCACHE_SCOPE_LEN];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(semcache_request_key_json(bad[i], strlen(bad[i]), key, scope, sizeof scope),
		             -EINVAL, "accepted: %s", bad[i]);
	char longmodel[300];
	snprintf(longmodel, sizeof longmodel, "{\"model\":\"%0200d\",\"messages\":[{\"role\":\"u\"}]}", 0);
	cr_assert_eq(semcache_request_key_json(longmodel, strlen(longmodel), key, scope, sizeof scope),
	             -EINVAL);
	const char *ok = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
	cr_assert_eq(semcache_request_key_json(ok, strlen(ok), key, scope, 8), -ENAMETOOLONG);
	cr_assert_eq(semcache_request_key_json(ok, strlen(ok), key, NULL, 0), 0);
	cr_assert_eq(semcache_request_key_json(NULL, 0, key, NULL, 0), -EINVAL);
}

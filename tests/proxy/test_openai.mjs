// test_openai.mjs - a real third-party client against semcache-proxy: the
// official `openai` npm package (version pinned by package-lock.json), plain
// and streaming calls, reading the proxy's X-Semcache header through the
// SDK's withResponse().  Run by test_openai.sh, which installs the package
// and starts the fake upstream and the proxy; PROXY_URL names the proxy.
// Prints "ok - name" / "not ok - name" lines; exit status 1 on any failure.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: `${process.env.PROXY_URL}/v1`, apiKey: 'sk-test', maxRetries: 0 });
let failed = 0, passed = 0;

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}`);
    console.log(`# ${String(e && e.stack || e).split('\n').join('\n# ')}`);
  }
}

function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

const ask = (text, extra = {}) => ({
  model: 'gpt-4o-mini', user: 'node-user', messages: [{ role: 'user', content: text }], ...extra,
});

async function plain(text) {
  const { data, response } = await client.chat.completions.create(ask(text)).withResponse();
  return { content: data.choices[0].message.content, kind: response.headers.get('x-semcache'), data };
}

async function streamed(text) {
  const { data: stream, response } = await client.chat.completions
    .create(ask(text, { stream: true })).withResponse();
  let content = '', finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      content += c.delta?.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  return { content, finish, kind: response.headers.get('x-semcache') };
}

await check('plain miss then exact hit', async () => {
  const q = 'What is the chemical symbol for gold?';
  const a = await plain(q);
  const b = await plain(q);
  expect(a.kind === 'miss', `first call: ${a.kind}`);
  expect(b.kind === 'hit-exact', `second call: ${b.kind}`);
  expect(a.content === `Echo: ${q}` && b.content === a.content, `${a.content} / ${b.content}`);
  expect(b.data.usage.total_tokens === a.data.usage.total_tokens, 'usage differs');
});

await check('semantic hit on a paraphrase', async () => {
  const a = await plain('What is the boiling point of ethanol at sea level?');
  const b = await plain('Tell me the boiling point of ethanol at sea level.');
  expect(a.kind === 'miss' && b.kind === 'hit-semantic', `${a.kind} / ${b.kind}`);
  expect(b.content === a.content, b.content);
});

await check('streaming miss then streamed hit', async () => {
  const q = 'Explain photosynthesis in one sentence.';
  const a = await streamed(q);
  const b = await streamed(q);
  expect(a.kind === 'miss' && b.kind === 'hit-exact', `${a.kind} / ${b.kind}`);
  expect(a.content === `Echo: ${q}` && b.content === a.content, `${a.content} / ${b.content}`);
  expect(a.finish === 'stop' && b.finish === 'stop', `${a.finish} / ${b.finish}`);
});

await check('plain answer replayed to a streaming client', async () => {
  const q = 'Name the largest planet in the solar system.';
  const a = await plain(q);
  const b = await streamed(q);
  expect(b.kind === 'hit-exact' && b.content === a.content, `${b.kind}: ${b.content}`);
});

await check('proxy errors reach the SDK as API errors', async () => {
  try {
    await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] });
    throw new Error('no error raised');
  } catch (e) {
    expect(e instanceof OpenAI.BadRequestError, `got ${e && e.constructor && e.constructor.name}: ${e}`);
    expect(e.status === 400 && /messages/.test(e.message), e.message);
  }
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);

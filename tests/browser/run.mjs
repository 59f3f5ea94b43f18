// Drives page.html in headless Chromium (Debian's /usr/bin/chromium through playwright-core):
// MQTT.js in a real browser, over ws:// or wss://.
//
//   node run.mjs PAGE_URL 'SCENARIO_JSON'   one scenario
//   node run.mjs PAGE_URL                   one scenario per line on standard input, until EOF
//
// One browser for the run, a new page (and so a new MQTT.js client) for each scenario.
// A scenario:
//   { "id": "ws-sub", "url": "ws://127.0.0.1:PORT/mqtt", "clientId": "browser-1",
//     "subscribe": {"topic": "t", "qos": 1},                      (optional)
//     "publish": [{"topic": "t", "payload": "text", "qos": 1}],    (optional)
//     "expect": [{"topic": "t", "payload": "text", "qos": 1}],     (optional, in order)
//     "timeoutMs": 10000 }
// Each step waits on an event (CONNACK, SUBACK, PUBACK, a message), never on a clock; the
// timeout only bounds it. Output, one JSON object per line on standard output:
//   {"event":"browser","version":..,"launchMs":..}  once Chromium is up
//   {"event":"ready","id":..,"granted":[..]}        connected and subscribed: publish now
//   {"event":"result","id":..,"ok":..,"received":[..],"error":..,"ms":..}
// The exit status is 0 when every scenario passed, 1 when one failed, 2 when the browser
// could not be started. The whole run is bounded by RUN_TIMEOUT_MS (env, default 120000).
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
const RUN_TIMEOUT_MS = Number(process.env.RUN_TIMEOUT_MS || 120000);

const [pageUrl, oneScenario] = process.argv.slice(2);
if (!pageUrl) {
  process.stderr.write("usage: node run.mjs PAGE_URL [SCENARIO_JSON]\n");
  process.exit(2);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// Rejects after ms unless the promise settles first.
function bounded(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function sameMessages(got, want) {
  if (got.length !== want.length) return false;
  return want.every((w, i) =>
    got[i].topic === w.topic && got[i].payload === w.payload && (w.qos === undefined || got[i].qos === w.qos));
}

async function runScenario(browser, s) {
  const started = Date.now();
  const timeoutMs = s.timeoutMs || 10000;
  const scenario = { ...s, timeoutMs };
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  try {
    await page.goto(pageUrl, { waitUntil: "load", timeout: timeoutMs });
    const ready = await bounded(page.evaluate((sc) => window.start(sc), scenario), timeoutMs, "start");
    emit({ event: "ready", id: s.id, granted: ready.granted });
    if (s.subscribe && ready.granted.some((q) => q !== s.subscribe.qos)) {
      throw new Error(`SUBACK granted ${JSON.stringify(ready.granted)}, asked for QoS ${s.subscribe.qos}`);
    }
    await bounded(page.evaluate((sc) => window.publish(sc), scenario), timeoutMs, "publish");
    const done = await bounded(page.evaluate((sc) => window.finish(sc), scenario), timeoutMs + 2000, "finish");
    const expect = s.expect || [];
    let error = done.error;
    if (!error && !sameMessages(done.received, expect)) error = "received messages differ from expected";
    if (!error && pageErrors.length) error = `page errors: ${pageErrors.join("; ")}`;
    return { event: "result", id: s.id, ok: !error, received: done.received, error, ms: Date.now() - started };
  } catch (e) {
    const error = [e.message.split("\n")[0], ...pageErrors].join("; ");
    return { event: "result", id: s.id, ok: false, received: [], error, ms: Date.now() - started };
  } finally {
    await page.close().catch(() => {});
  }
}

async function main() {
  const launchStart = Date.now();
  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 60000 });
  } catch (e) {
    emit({ event: "error", error: `could not start ${CHROMIUM}: ${e.message.split("\n")[0]}` });
    return 2;
  }
  emit({ event: "browser", version: browser.version(), launchMs: Date.now() - launchStart });
  let failed = false;
  try {
    const lines = oneScenario !== undefined ? [oneScenario] : createInterface({ input: process.stdin });
    for await (const line of lines) {
      if (!line.trim()) continue;
      let s;
      try {
        s = JSON.parse(line);
      } catch (e) {
        emit({ event: "result", id: null, ok: false, received: [], error: `bad scenario JSON: ${e.message}` });
        failed = true;
        continue;
      }
      const result = await runScenario(browser, s);
      failed ||= !result.ok;
      emit(result);
    }
  } finally {
    await browser.close();
  }
  return failed ? 1 : 0;
}

const watchdog = setTimeout(() => {
  emit({ event: "error", error: `run.mjs: the run took more than ${RUN_TIMEOUT_MS} ms` });
  process.exit(1); // Chromium goes with its pipe to this process
}, RUN_TIMEOUT_MS);
watchdog.unref();
process.exitCode = await main();

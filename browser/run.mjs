// Sesame's browser tests: Debian's Chromium, headless, driven by
// playwright-core, against a real `sesame serve` with real peers (SMTP,
// SMS webhook) and a relying party using openid-client.
//
//   SESAME_TEST_BIN=../target/debug/sesame node run.mjs
//   SCREENSHOTS=../docs/screenshots node run.mjs   # also writes the README's screenshots
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startSmtp, startReceiver, decoded, eventually } from "./peers.mjs";
import { startRp } from "./rp.mjs";

const BIN = path.resolve(process.env.SESAME_TEST_BIN || "../target/debug/sesame");
const SHOTS = process.env.SCREENSHOTS ? path.resolve(process.env.SCREENSHOTS) : null;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});

let failures = 0;
async function scenario(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}\n${e && e.stack}`);
  }
}

async function startSesame({ smtp, sms, rpPort, adminPort }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sesame-browser-"));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  fs.writeFileSync(path.join(dir, "clients.toml"), `
[[client]]
id = "rp"
name = "Acme Notes"
secret_env = "RP_SECRET"
redirect_uris = ["http://localhost:${rpPort}/callback"]
post_logout_redirect_uris = ["http://localhost:${rpPort}/bye"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "phone", "offline_access"]
`);
  fs.writeFileSync(path.join(dir, "sesame.toml"), `
issuer = "${issuer}"
clients_file = "${path.join(dir, "clients.toml")}"
[server]
bind = "127.0.0.1:${port}"
workers = 2
[database]
url = "sqlite://${path.join(dir, "sesame.db")}"
[otp]
resend_after = "1s"
max_sends = 20
[account]
reauth_after = "3s"
[sms]
provider = "webhook"
url = "${sms.url}"
[email]
provider = "smtp"
smtp_url = "${smtp.url}"
from = "Sesame <no-reply@example.com>"
[log]
level = "warn"
`);
  const child = spawn(BIN, ["serve", "--config", path.join(dir, "sesame.toml")], {
    env: { ...process.env, RP_SECRET: "rp-secret-for-browser-tests" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  let exited = null;
  child.on("exit", (code) => { exited = code; });
  await eventually("sesame to answer", async () => {
    if (exited !== null) throw new Error(`sesame serve exited with ${exited}`);
    try { return (await fetch(`${issuer}/health/ready`)).ok; } catch { return false; }
  }, 30000);
  return { issuer, child, dir };
}

const smtp = await startSmtp();
const sms = await startReceiver();
const rpPort = await freePort();
const sesame = await startSesame({ smtp, sms, rpPort });
const rp = await startRp({ issuerUrl: sesame.issuer, clientId: "rp", clientSecret: "rp-secret-for-browser-tests", port: rpPort });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** Saves the page at desktop and phone width (when SCREENSHOTS is set). */
async function shoot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  const size = page.viewportSize();
  for (const [label, vp] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(vp);
    await page.screenshot({ path: path.join(SHOTS, `${name}-${label}.png`), fullPage: true });
  }
  await page.setViewportSize(size);
}

const mailsTo = (address) => smtp.mails.filter((m) => m.to.some((t) => t.includes(address)));
async function newMailTo(address, before) {
  return eventually(`a mail to ${address}`, () => mailsTo(address).length > before && mailsTo(address).at(-1));
}
const codeIn = (mail) => decoded(mail).match(/Subject: (\d{6})/)[1];
const linkIn = (mail) => decoded(mail).match(/(http:\/\/[^\s"<]+\/login\/magic\?token=[A-Za-z0-9_-]+)/)[1];

/** From the RP's /login to Sesame's code page, for `identifier`. */
async function askForCode(page, identifier, { shots, query = "" } = {}) {
  await page.goto(`${rp.base}/login${query}`);
  await page.waitForURL(/\/login$/);
  assert.match(await page.textContent("main"), /Acme Notes/, "the client's name is shown");
  if (shots) await shoot(page, "login");
  await page.getByLabel("Email or phone number").fill(identifier);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForURL(/\/login\/verify$/);
  assert.equal(await page.getAttribute("#code", "autocomplete"), "one-time-code");
}

async function enterCode(page, code) {
  await page.getByLabel(/digit code/).fill(code);
  await page.getByRole("button", { name: "Verify" }).click();
}

async function finishAtRp(page) {
  await page.waitForURL(`${rp.base}/callback**`);
  await page.waitForSelector("#welcome, #error");
  assert.equal(await page.$("#error"), null, rp.state.error && rp.state.error.message);
  return rp.state;
}

async function signUpNew(page, { identifier, code, shots }) {
  await enterCode(page, code);
  await page.waitForURL(/\/signup$/);
  assert.match(await page.textContent("#verified-address"), new RegExp(identifier.replace("+", "\\+")));
  if (shots) await shoot(page, "signup");
  await page.getByLabel(/First name/).fill("Ada");
  await page.getByLabel(/Last name/).fill("Lovelace");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/consent$/);
  assert.match(await page.textContent("h1"), /Acme Notes/);
  if (shots) await shoot(page, "consent");
  await page.getByRole("button", { name: "Allow" }).click();
  return finishAtRp(page);
}

/** A new account made on Sesame's own pages (no app), ending on /account. */
async function signUpOnSesame(page, email) {
  const before = mailsTo(email).length;
  await page.goto(`${sesame.issuer}/login`);
  await page.getByLabel("Email or phone number").fill(email);
  await page.getByRole("button", { name: "Continue" }).click();
  await enterCode(page, codeIn(await newMailTo(email, before)));
  await page.waitForURL(/\/signup$/);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(/\/account$/);
}

async function refreshAndLogout(page, context) {
  const before = rp.state.tokens.access_token;
  await page.goto(`${rp.base}/refresh`);
  await page.waitForSelector("#refreshed");
  assert.ok(rp.state.refreshed.access_token && rp.state.refreshed.access_token !== before, "a new access token");
  assert.ok(rp.state.refreshed.refresh_token !== rp.state.tokens.refresh_token, "the refresh token rotated");
  await page.goto(`${rp.base}/logout`);
  await page.waitForURL(`${rp.base}/bye**`);
  assert.equal(rp.state.bye, "bye-state", "state comes back from RP-initiated logout");
  await page.goto(`${sesame.issuer}/account`);
  await page.waitForURL(/\/login$/);
  const cookies = await context.cookies(sesame.issuer);
  assert.ok(cookies.every((c) => c.httpOnly && c.sameSite === "Lax"), JSON.stringify(cookies));
}

await scenario("email: authorize with PKCE → login → code by SMTP → signup → consent → tokens → userinfo → refresh → logout", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const email = "ada@example.com";
  const before = mailsTo(email).length;
  await askForCode(page, email, { shots: true });
  const mail = await newMailTo(email, before);
  if (SHOTS) await shoot(page, "verify");
  const state = await signUpNew(page, { identifier: email, code: codeIn(mail), shots: true });
  assert.equal(state.claims.email, email);
  assert.equal(state.claims.aud, "rp");
  assert.deepEqual(state.claims.amr, ["otp"]);
  assert.ok(state.claims.auth_time);
  assert.equal(state.userinfo.sub, state.claims.sub, "userinfo agrees with the ID token");
  assert.equal(state.userinfo.email, state.claims.email);
  assert.equal(state.userinfo.given_name, "Ada");
  await page.goto(`${sesame.issuer}/account`);
  assert.match(await page.textContent("#account-email"), /ada@example.com/);
  assert.match(await page.textContent("main"), /Acme Notes/, "the account page lists the connected app");
  if (SHOTS) await shoot(page, "account");
  await refreshAndLogout(page, context);
  await context.close();
});

await scenario("phone: the same through the SMS webhook", async () => {
  const context = await browser.newContext({ viewport: PHONE });
  const page = await context.newPage();
  const before = sms.received.length;
  await askForCode(page, "+1 415 555 0134");
  const message = await eventually("an SMS", () => sms.received.length > before && sms.received.at(-1));
  assert.equal(message.to, "+14155550134");
  assert.equal(message.magic_link, null);
  const state = await signUpNew(page, { identifier: "+14155550134", code: message.code });
  assert.equal(state.claims.phone_number, "+14155550134");
  assert.deepEqual(state.claims.amr, ["otp", "sms"]);
  await refreshAndLogout(page, context);
  await context.close();
});

await scenario("a returning user skips signup and consent", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const email = "ada@example.com";
  const before = mailsTo(email).length;
  await askForCode(page, email);
  const mail = await newMailTo(email, before);
  await enterCode(page, codeIn(mail));
  const state = await finishAtRp(page);
  assert.equal(state.claims.email, email);
  await context.close();
});

await scenario("form_post: the page's script posts the answer to the app (response_mode=form_post), ID token in RS256", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const email = "ada@example.com";
  const before = mailsTo(email).length;
  await askForCode(page, email, { query: "?response_mode=form_post" });
  await enterCode(page, codeIn(await newMailTo(email, before)));
  const state = await finishAtRp(page);
  assert.equal(state.callbackMethod, "POST", "the code came in a POST body, not the URL");
  assert.equal(state.idTokenAlg, "RS256", "the client's default id_token_signed_response_alg");
  assert.equal(state.claims.email, email);
  await context.close();
});

await scenario("magic link: a cookie-less GET consumes nothing; opened in another browser it signs that one in, and the asking tab still needs the code", async () => {
  const asking = await browser.newContext({ viewport: DESKTOP });
  const tab = await asking.newPage();
  const email = "ada@example.com";
  const before = mailsTo(email).length;
  await askForCode(tab, email);
  const mail = await newMailTo(email, before);
  const link = linkIn(mail);
  // A mail scanner: fetches the link twice with no cookies.
  for (let i = 0; i < 2; i += 1) {
    const res = await fetch(link, { redirect: "manual" });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /Continue/);
  }
  // Another browser opens it and continues without the number: it is signed in there...
  const other = await browser.newContext({ viewport: PHONE });
  const phone = await other.newPage();
  await phone.goto(link);
  if (SHOTS) await shoot(phone, "magic-link");
  await phone.getByRole("button", { name: "Continue" }).click();
  await phone.waitForURL(/\/account$/);
  assert.match(await phone.textContent(".flash"), /signed in here/i);
  // ...and the asking tab is not: it stays on the code page (it polls every 2 s).
  await new Promise((r) => setTimeout(r, 3000));
  assert.match(tab.url(), /\/login\/verify$/);
  const check = await asking.newPage();
  await check.goto(`${sesame.issuer}/account`);
  assert.match(check.url(), /\/login$/, "the asking browser is not signed in");
  await check.close();
  // The code from the same mail still finishes there.
  await enterCode(tab, codeIn(mail));
  const state = await finishAtRp(tab);
  assert.equal(state.claims.email, email);
  // The link is spent now.
  const third = await browser.newContext();
  const late = await third.newPage();
  await late.goto(link);
  await late.getByRole("button", { name: "Continue" }).click();
  assert.match(await late.textContent("h1"), /can.t be used/);
  if (SHOTS) await shoot(late, "error");
  await Promise.all([asking.close(), other.close(), third.close()]);
});

await scenario("magic link with number matching: the number the asking tab shows, entered in the other browser, moves that tab on", async () => {
  const asking = await browser.newContext({ viewport: DESKTOP });
  const tab = await asking.newPage();
  const email = "ada@example.com";
  await new Promise((r) => setTimeout(r, 1100)); // the resend gap
  const before = mailsTo(email).length;
  await askForCode(tab, email);
  const number = (await tab.textContent("[data-match-number]")).match(/\d\d/)[0];
  const link = linkIn(await newMailTo(email, before));
  const other = await browser.newContext({ viewport: PHONE });
  const phone = await other.newPage();
  await phone.goto(link);
  await phone.getByLabel(/Enter the number it shows/).fill(number);
  await phone.getByRole("button", { name: "Continue" }).click();
  await phone.waitForURL(/\/account$/);
  assert.match(await phone.textContent(".flash"), /continues too/);
  // The first tab moves on by itself, to the app.
  const state = await finishAtRp(tab);
  assert.equal(state.claims.email, email);
  await Promise.all([asking.close(), other.close()]);
});

await scenario("account: a password change on a sign-in older than account.reauth_after asks for a fresh code first", async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const email = "reauth@example.com";
  await signUpOnSesame(page, email);
  let before;
  await new Promise((r) => setTimeout(r, 4500)); // account.reauth_after = "3s", in whole seconds
  await page.getByLabel(/New password/).fill("correct horse battery");
  await Promise.all([
    page.waitForURL(/\/account\/reauth$/),
    page.getByRole("button", { name: "Save" }).nth(1).click(),
  ]);
  assert.match(await page.textContent(".flash"), /confirm it.s you/i);
  if (SHOTS) await shoot(page, "reauth");
  before = mailsTo(email).length;
  await page.getByRole("button", { name: "Send code" }).click();
  await enterCode(page, codeIn(await newMailTo(email, before)));
  await page.waitForURL(/\/account$/);
  assert.match(await page.textContent(".flash"), /Confirmed/);
  await page.getByLabel(/New password/).fill("correct horse battery");
  await Promise.all([
    page.waitForURL(/\/account$/),
    page.getByRole("button", { name: "Save" }).nth(1).click(),
  ]);
  assert.match(await page.textContent(".flash"), /sign in with your password/);
  // A password notice went to the account's email.
  const notice = await newMailTo(email, before + 1);
  assert.match(decoded(notice), /password was changed/i);
  await context.close();
});

await scenario("admin: signs in with a code, registers an otp client on the page, and the client works at once; a non-admin gets 403", async () => {
  // An account made admin with the CLI, as an operator would.
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  const email = "root@example.com";
  await signUpOnSesame(page, email);
  let before;
  const made = spawnSync(BIN, ["user", "make-admin", email, "--config", path.join(sesame.dir, "sesame.toml")], { encoding: "utf8" });
  assert.equal(made.status, 0, made.stderr);

  // /admin asks for a sign-in with a code (no admin password), then comes back.
  await page.goto(`${sesame.issuer}/account`);
  await page.getByRole("button", { name: "Sign out", exact: true }).first().click();
  await page.waitForURL(/\/login/);
  await new Promise((r) => setTimeout(r, 1100)); // the resend gap (otp.resend_after = 1s)
  await page.goto(`${sesame.issuer}/admin`);
  await page.waitForURL(/\/login$/);
  before = mailsTo(email).length;
  await page.getByLabel("Email or phone number").fill(email);
  await page.getByRole("button", { name: "Continue" }).click();
  await enterCode(page, codeIn(await newMailTo(email, before)));
  await page.waitForURL(/\/admin\/clients$/);
  if (SHOTS) await shoot(page, "admin-clients");

  await page.getByRole("link", { name: "Register a client" }).click();
  await page.getByLabel("Name", { exact: true }).fill("Acme Backend");
  await page.getByLabel("otp", { exact: true }).check();
  await page.getByLabel("authorization_code", { exact: true }).uncheck();
  await page.getByLabel("Scopes").fill("openid phone email");
  if (SHOTS) await shoot(page, "admin-register");
  await page.getByRole("button", { name: "Register a client" }).click();
  const clientId = (await page.textContent("#client-id")).trim();
  const secret = (await page.textContent("#client-secret")).trim();
  assert.ok(secret.length >= 40, "a generated secret is shown once");
  if (SHOTS) await shoot(page, "admin-secret");

  // That client completes the OTP API flow immediately.
  const basic = "Basic " + Buffer.from(`${clientId}:${secret}`).toString("base64");
  const post = (p, body, json) => fetch(`${sesame.issuer}${p}`, {
    method: p === "/api/v1/user/" ? "PUT" : "POST",
    headers: { authorization: basic, "content-type": json ? "application/json" : "application/x-www-form-urlencoded" },
    body: json ? JSON.stringify(body) : new URLSearchParams(body),
  });
  const phone = "+14155550177";
  const smsBefore = sms.received.length;
  assert.equal((await post("/otp/getcode/", { phone })).status, 200);
  const message = await eventually("the SMS", () => sms.received.length > smsBefore && sms.received.at(-1));
  const verified = await (await post("/otp/verifycode/", { phone, code: message.code })).json();
  assert.ok(verified.secret_identifier, JSON.stringify(verified));
  const created = await post("/api/v1/user/", { secret_identifier: verified.secret_identifier, auto_username: true, first_name: "Grace" }, true);
  assert.equal(created.status, 201, await created.text());
  const again = await (await post("/otp/verifycode/", { phone, code: message.code })).json();
  assert.equal(again.error, "invalid_code", "a code works once");
  const smsBefore2 = sms.received.length;
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await post("/otp/getcode/", { phone })).status, 200);
  const second = await eventually("the SMS", () => sms.received.length > smsBefore2 && sms.received.at(-1));
  const tokens = await (await post("/oauth2/token", { grant_type: "otp", phone, code: second.code })).json();
  assert.ok(tokens.access_token && tokens.id_token, JSON.stringify(tokens));

  // The user and the audit trail are on the admin pages.
  await page.goto(`${sesame.issuer}/admin/users?q=${encodeURIComponent("+14155550177")}`);
  await page.getByRole("link", { name: phone }).click();
  if (SHOTS) await shoot(page, "admin-user");
  await page.goto(`${sesame.issuer}/admin/audit?client=${clientId}`);
  assert.match(await page.textContent("table"), /token_issued/);
  if (SHOTS) await shoot(page, "admin-audit");

  // A signed-in user without the admin role gets 403.
  const other = await browser.newContext();
  const user = await other.newPage();
  const ada = "ada@example.com";
  before = mailsTo(ada).length;
  await user.goto(`${sesame.issuer}/login`);
  await user.getByLabel("Email or phone number").fill(ada);
  await user.getByRole("button", { name: "Continue" }).click();
  await enterCode(user, codeIn(await newMailTo(ada, before)));
  await user.waitForURL(/\/account$/);
  const res = await user.goto(`${sesame.issuer}/admin`);
  assert.equal(res.status(), 403);
  await Promise.all([context.close(), other.close()]);
});

await scenario("error pages: an unknown client or a foreign redirect URI is shown, never redirected", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(`${sesame.issuer}/oauth2/authorize?client_id=rp&response_type=code&scope=openid&redirect_uri=https://evil.example/cb`);
  assert.equal(res.status(), 400);
  assert.equal(new URL(page.url()).host, new URL(sesame.issuer).host);
  assert.match(await page.textContent("h1"), /can.t be completed/);
  await context.close();
});

await browser.close();
rp.close();
smtp.close();
sms.close();
sesame.child.kill("SIGTERM");
fs.rmSync(sesame.dir, { recursive: true, force: true });
if (failures) {
  console.log(`${failures} browser scenario(s) failed`);
  process.exit(1);
}
console.log("all browser scenarios passed");

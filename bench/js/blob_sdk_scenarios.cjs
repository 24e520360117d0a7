// Scenarios of the JavaScript SDK (@azure/storage-blob) against a Blob endpoint, one JSON line each:
//   node bench/js/blob_sdk_scenarios.cjs "<connection string>"
// Driven by bench/blob_js_sdk.py (which installs the SDK and starts exastor); each scenario is what an
// application written against Azure does, and asserts what Azure answers.
"use strict";
const assert = require("assert");
const crypto = require("crypto");
const blob = require("@azure/storage-blob");
const { BlobServiceClient, StorageSharedKeyCredential } = blob;

const cs = process.argv[2];
const parts = Object.fromEntries(cs.split(";").filter((p) => p.includes("="))
  .map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]));
const cred = new StorageSharedKeyCredential(parts.AccountName, parts.AccountKey);
const endpoint = parts.BlobEndpoint.replace(/\/$/, "");
const svc = new BlobServiceClient(endpoint, cred);
const hour = () => new Date(Date.now() + 3600e3);
let n = 0;
const unique = (p) => `${p}${Date.now().toString(36)}${(n++).toString(36)}`;

async function container() {
  const cc = svc.getContainerClient(unique("js"));
  await cc.create();
  return cc;
}

async function rejects(promise, status, code) {
  try {
    await promise;
  } catch (e) {
    assert.strictEqual(e.statusCode, status, `status ${e.statusCode} ${e.code}`);
    if (code) assert.strictEqual(e.code || (e.details && e.details.errorCode), code);
    return;
  }
  assert.fail(`expected ${status} ${code || ""}`);
}

const scenarios = {
  "account SAS: list, read and write": async () => {
    const cc = await container();
    await cc.getBlockBlobClient("a").upload("x", 1);
    const sas = blob.generateAccountSASQueryParameters({
      expiresOn: hour(), startsOn: new Date(Date.now() - 60e3), protocol: "https,http",
      permissions: blob.AccountSASPermissions.parse("rwdlacupt"), services: "b", resourceTypes: "sco" }, cred).toString();
    const sasSvc = new BlobServiceClient(`${endpoint}?${sas}`);
    const names = [];
    for await (const c of sasSvc.listContainers({ prefix: cc.containerName })) names.push(c.name);
    assert.deepStrictEqual(names, [cc.containerName]);
    await sasSvc.getContainerClient(cc.containerName).getBlockBlobClient("b").upload("yy", 2);
    assert.strictEqual((await sasSvc.getContainerClient(cc.containerName).getBlobClient("a").getProperties()).contentLength, 1);
  },
  "copy authorized by account SAS (syncCopyFromURL)": async () => {
    const cc = await container();
    const src = cc.getBlockBlobClient("src");
    await src.upload("copy me", 7);
    const sas = blob.generateAccountSASQueryParameters({ expiresOn: hour(),
      permissions: blob.AccountSASPermissions.parse("rwc"), services: "b", resourceTypes: "o" }, cred).toString();
    const dest = new BlobServiceClient(`${endpoint}?${sas}`).getContainerClient(cc.containerName).getBlobClient("dst");
    assert.strictEqual((await dest.syncCopyFromURL(`${src.url}?${sas}`)).copyStatus, "success");
  },
  "copy authorized by blob SAS (beginCopyFromURL)": async () => {
    const cc = await container();
    const src = cc.getBlockBlobClient("src");
    await src.upload("copy me", 7);
    const read = blob.generateBlobSASQueryParameters({ containerName: cc.containerName, blobName: "src",
      permissions: blob.BlobSASPermissions.parse("r"), expiresOn: hour() }, cred).toString();
    const write = blob.generateBlobSASQueryParameters({ containerName: cc.containerName, blobName: "dst",
      permissions: blob.BlobSASPermissions.parse("cw"), expiresOn: hour() }, cred).toString();
    const dest = new blob.BlobClient(`${cc.getBlobClient("dst").url}?${write}`);
    const poller = await dest.beginCopyFromURL(`${src.url}?${read}`);
    assert.strictEqual((await poller.pollUntilDone()).copyStatus, "success");
  },
  "lease ids in GUID forms (32 digits, braces)": async () => {
    const cc = await container();
    const b = cc.getBlockBlobClient("l");
    await b.upload("x", 1);
    const id = crypto.randomUUID();
    const lc = b.getBlobLeaseClient(id.replace(/-/g, ""));
    assert.strictEqual((await lc.acquireLease(15)).leaseId, id);
    const next = crypto.randomUUID();
    await lc.changeLease(`{${next}}`);
    await b.upload("y", 1, { conditions: { leaseId: next } });
    await b.getBlobLeaseClient(next).releaseLease();
  },
  "break lease reports breaking during the period": async () => {
    const cc = await container();
    const b = cc.getBlockBlobClient("l");
    await b.upload("x", 1);
    const lc = b.getBlobLeaseClient();
    await lc.acquireLease(-1);
    assert.strictEqual((await lc.breakLease(30)).leaseTime, 30);
    const p = await b.getProperties();
    assert.deepStrictEqual([p.leaseState, p.leaseStatus], ["breaking", "locked"]);
    await lc.breakLease(0);
    assert.strictEqual((await b.getProperties()).leaseState, "broken");
  },
  "blob index tags: conditions and find": async () => {
    const cc = await container();
    const b = cc.getBlockBlobClient("t");
    await b.upload("x", 1, { tags: { project: "alpha", stage: "raw" } });
    await rejects(b.delete({ conditions: { tagConditions: "\"project\"='beta'" } }), 412, "ConditionNotMet");
    await b.setMetadata({ k: "v" }, { conditions: { tagConditions: "\"project\"='alpha' OR \"x\"='y'" } });
    const found = [];
    for await (const f of svc.findBlobsByTags(`@container='${cc.containerName}' AND "stage"='raw'`)) found.push(f.name);
    assert.deepStrictEqual(found, ["t"]);
    await rejects((async () => { for await (const f of svc.findBlobsByTags("\"a\"<>'1'")) void f; })(), 400);
  },
  "blob batch: delete (service) and set tier (container)": async () => {
    const cc = await container();
    for (const name of ["a", "b", "c"]) await cc.getBlockBlobClient(name).upload("x", 1);
    const del = await svc.getBlobBatchClient().deleteBlobs([cc.getBlobClient("a").url, cc.getBlobClient("nope").url], cred);
    assert.deepStrictEqual(del.subResponses.map((s) => s.status), [202, 404]);
    const tier = await cc.getBlobBatchClient().setBlobsAccessTier([cc.getBlobClient("b").url, cc.getBlobClient("c").url], cred, "Cool");
    assert.strictEqual(tier.subResponsesSucceededCount, 2);
    assert.strictEqual((await cc.getBlobClient("b").getProperties()).accessTier, "Cool");
  },
  "append blob: conditions, seal, sealed snapshot": async () => {
    const cc = await container();
    const a = cc.getAppendBlobClient("a");
    await a.create();
    await a.appendBlock("abc", 3, { conditions: { appendPosition: 0, maxSize: 10 } });
    await rejects(a.appendBlock("d", 1, { conditions: { appendPosition: 0 } }), 412, "AppendPositionConditionNotMet");
    await a.seal();
    assert.strictEqual((await a.getProperties()).isSealed, true);
    await rejects(a.appendBlock("d", 1), 409);
    const snap = await a.createSnapshot();
    assert.strictEqual((await a.withSnapshot(snap.snapshot).getProperties()).isSealed, true);
  },
  "archive tier refuses reads until rehydrated": async () => {
    const cc = await container();
    const b = cc.getBlockBlobClient("arch");
    await b.upload("cold bytes", 10);
    const p = await b.getProperties();
    assert.deepStrictEqual([p.accessTier, p.accessTierInferred], ["Hot", true]);
    await b.setAccessTier("Archive");
    await rejects(b.download(), 409, "BlobArchived");
    await b.setAccessTier("Hot", { rehydratePriority: "High" });
    assert.strictEqual((await b.downloadToBuffer()).toString(), "cold bytes");
  },
  "CORS: wildcard subdomain preflight": async () => {
    const before = await svc.getProperties();
    try {
      await svc.setProperties({ cors: [{ allowedOrigins: "https://*.contoso.com", allowedMethods: "GET,PUT",
        allowedHeaders: "x-ms-*", exposedHeaders: "x-ms-request-id", maxAgeInSeconds: 60 }] });
      const cc = await container();
      const url = cc.getBlobClient("x").url;
      let r = await fetch(url, { method: "OPTIONS", headers: { Origin: "https://www.Contoso.com",
        "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-ms-blob-type" } });
      assert.strictEqual(r.status, 200);
      assert.strictEqual(r.headers.get("access-control-allow-origin"), "https://www.Contoso.com");
      r = await fetch(url, { method: "OPTIONS", headers: { Origin: "https://contoso.com", "Access-Control-Request-Method": "PUT" } });
      assert.strictEqual(r.status, 403);
    } finally {
      await svc.setProperties({ cors: before.cors || [] });
    }
  },
  "block blob: Content-MD5 on stageBlock, range MD5 on download": async () => {
    const cc = await container();
    const b = cc.getBlockBlobClient("b");
    const md5 = (s) => crypto.createHash("md5").update(s).digest();
    await rejects(b.stageBlock(Buffer.from("001").toString("base64"), "abc", 3, { transactionalContentMD5: md5("xyz") }), 400, "Md5Mismatch");
    await b.stageBlock(Buffer.from("001").toString("base64"), "abc", 3, { transactionalContentMD5: md5("abc") });
    await b.commitBlockList([Buffer.from("001").toString("base64")]);
    const d = await b.download(0, 2, { rangeGetContentMD5: true });
    assert.deepStrictEqual(Buffer.from(d.contentMD5), md5("ab"));
  },
  "AzCopy-style upload: many blocks in parallel, then commit": async () => {
    const cc = await container();
    const data = crypto.randomBytes(9 * 1024 * 1024 + 123);
    const b = cc.getBlockBlobClient("big");
    await b.uploadData(data, { blockSize: 1024 * 1024, concurrency: 8, maxSingleShotSize: 1 });
    const [committed] = [(await b.getBlockList("committed")).committedBlocks];
    assert.strictEqual(committed.length, 10);
    assert.ok(Buffer.compare(await b.downloadToBuffer(), data) === 0);
  },
  "listing: pages, include, uncommitted": async () => {
    const cc = await container();
    for (let i = 0; i < 7; i++) await cc.getBlockBlobClient(`p${i}`).upload("x", 1, { metadata: { i: String(i) } });
    await cc.getBlockBlobClient("staged").stageBlock(Buffer.from("1").toString("base64"), "x", 1);
    const pages = [];
    for await (const page of cc.listBlobsFlat({ includeMetadata: true }).byPage({ maxPageSize: 3 })) {
      pages.push(page.segment.blobItems.map((x) => x.name));
    }
    assert.deepStrictEqual(pages.map((p) => p.length), [3, 3, 1]);
    const all = [];
    for await (const x of cc.listBlobsFlat({ includeUncommitedBlobs: true })) all.push(x.name);
    assert.ok(all.includes("staged"));
  },
  "invalid container names": async () => {
    await rejects(svc.getContainerClient("Bad_Name").create(), 400, "InvalidResourceName");
    await rejects(svc.getContainerClient("ab").getProperties(), 400);
  },
  "service and account information": async () => {
    const info = await svc.getAccountInfo();
    assert.ok(info.skuName && info.accountKind);
    assert.ok(await svc.getProperties());
  },
};

(async () => {
  for (const [name, fn] of Object.entries(scenarios)) {
    const started = Date.now();
    try {
      await fn();
      console.log(JSON.stringify({ name, outcome: "passed", ms: Date.now() - started }));
    } catch (e) {
      console.log(JSON.stringify({ name, outcome: "failed", ms: Date.now() - started,
        error: String((e && (e.message || e)) || e).split("\n")[0].slice(0, 200) }));
    }
  }
})();

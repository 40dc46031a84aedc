// Drives the rap page in Debian's Chromium through playwright-core: add a concept by dropping
// two photos, ask about another photo of it, see it among the retrieved concepts with a box
// drawn, see a clear error for a broken photo, delete the concept; screenshots at each step.
// Prints one JSON object for the Rust test to check.
//
// usage: node browser.cjs URL PHOTO1 PHOTO2 QUERY_PHOTO ARTIFACTS_DIR PROFILE_DIR
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, photo1, photo2, query, artifacts, profile] = process.argv.slice(2);

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 390, height: 844 }, // a phone
  });
  const out = { steps: [] };
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("dialog", (d) => d.accept());
  const shot = async (name) => {
    const file = path.join(artifacts, name + ".png");
    await page.screenshot({ path: file, fullPage: true });
    out.steps.push(name);
  };

  await page.goto(url);
  await page.waitForSelector("[data-testid=gallery] .empty");
  out.phone_overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await shot("01-empty");

  // Add: name, category, info, and two photos dropped on the drop zone.
  await page.fill("[data-testid=add-name]", "Bo");
  await page.fill("[data-testid=add-category]", "dog");
  await page.fill("[data-testid=add-info]", "<Bo> is a corgi who loves the beach.");
  const files = [photo1, photo2].map((p) => ({ name: path.basename(p), b64: fs.readFileSync(p).toString("base64") }));
  const transfer = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: "image/jpeg" }));
    }
    return dt;
  }, files);
  await page.dispatchEvent("[data-testid=add-drop]", "drop", { dataTransfer: transfer });
  out.previews = await page.locator("#add-previews img").count();
  await page.click("[data-testid=add-submit]");
  const card = page.locator("[data-testid=concept-card][data-name=Bo]");
  await card.waitFor();
  await page.waitForFunction(() => Array.from(document.querySelectorAll("[data-testid=concept-card] img")).every((i) => i.complete && i.naturalWidth > 0));
  out.card_images = await card.locator("img").count();
  await shot("02-added");

  // Ask about another photo of it.
  await page.setInputFiles("[data-testid=chat-file]", query);
  await page.fill("[data-testid=question]", "Who is this?");
  await page.click("[data-testid=ask]");
  const hit = page.locator("[data-testid=retrieved-concept][data-name=Bo]");
  await hit.waitFor({ timeout: 240000 });
  out.retrieved = await page.locator("[data-testid=retrieved-concept]").allTextContents();
  await page.waitForFunction(() => !document.getElementById("ask").disabled, null, { timeout: 240000 });
  out.answer = await page.textContent("[data-testid=answer]");
  out.box_pixels = await page.evaluate(() => {
    const c = document.getElementById("boxes");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  await shot("03-asked");

  // "That's not Bo": the hit's button stores the photo's box as a negative example of Bo.
  await hit.locator("[data-testid=not-concept]").click();
  await page.locator("[data-testid=not-concept-saved]").waitFor();
  out.negatives = await page.evaluate(async () => {
    const res = await api("/v1/concepts/Bo");
    return ((await res.json()).negatives || []).length;
  });

  // A broken photo gets a clear message, and nothing is added.
  await page.fill("[data-testid=add-name]", "Broken");
  await page.setInputFiles("[data-testid=add-files]", { name: "broken.jpg", mimeType: "image/jpeg", buffer: Buffer.from("not really a jpeg") });
  await page.click("[data-testid=add-submit]");
  await page.locator("[data-testid=error]").waitFor({ state: "visible" });
  out.error = await page.textContent("[data-testid=error]");
  out.cards_after_error = await page.locator("[data-testid=concept-card]").count();
  await shot("04-error");

  // Delete it.
  await card.locator("[data-testid=delete]").click();
  await card.waitFor({ state: "detached" });
  out.cards_after_delete = await page.locator("[data-testid=concept-card]").count();
  await shot("05-deleted");

  // The same page on a desktop screen.
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot("06-desktop");

  out.console_errors = consoleErrors.filter((e) => !e.includes("Failed to load resource"));
  await context.close();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});

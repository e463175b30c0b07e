// Remakes docs/screenshot.png: the page after running a program and Clippy, in the light theme.
// Usage (from the repository root, after `cargo build`): node tests/browser/screenshot.js [out.png]

import path from 'node:path';
import { REPO, launchBrowser, openPage, setCode, startServer } from './harness.js';

const out = path.resolve(process.argv[2] ?? path.join(REPO, 'docs', 'screenshot.png'));

const PROGRAM = `// Count the words of a text, most frequent first.
use std::collections::HashMap;

fn main() {
    let text = "the cat saw the dog and the dog saw a crab";
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word).or_default() += 1;
    }

    let mut pairs: Vec<(&str, usize)> = counts.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total = pairs.len();

    for (word, n) in pairs.iter().take(5) {
        println!("{word:>5} {:<4} {n}", "#".repeat(*n));
    }
}
`;

const server = await startServer();
const browser = await launchBrowser();
try {
  const page = await openPage(browser, server.url, { viewport: { width: 1280, height: 720 } });
  await setCode(page, PROGRAM);
  await page.click('#run');
  await page.waitForSelector('html[data-runs="1"]', { timeout: 60_000 });
  // Clippy answers in a tab of its own; the picture shows the run's tab beside it.
  await page.selectOption('#tools', 'clippy');
  await page.waitForSelector('html[data-tools="1"]', { timeout: 60_000 });
  await page.click('#tab-run');
  // Put the caret on the line with the warning, then take the focus away for a calm picture.
  await page.click('#diagnostics button');
  await page.locator('#summary').click();
  await page.evaluate(() => document.activeElement.blur());
  await page.waitForTimeout(1500); // the jump's highlight fades out
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}

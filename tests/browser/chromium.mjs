// Headless Debian Chromium through playwright-core, with a throwaway profile, and what
// the scripts do in the Airflow UI's logged-in page session.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const FINISHED = new Set(['success', 'failed']);

// Runs `use(page)` in a fresh browser profile, removed afterwards.
export async function withPage(viewport, use) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_FLAGS, viewport,
  });
  try {
    return await use(await context.newPage());
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

export function reportFailure(error) {
  console.error(error);
  process.exitCode = 2;
}

// A REST call with the page's session; throws on an error status.
export async function api(page, method, url, data) {
  const response = await page.request.fetch(url, { method, data });
  if (!response.ok()) throw new Error(`${method} ${url}: ${response.status()} ${await response.text()}`);
  return response.json();
}

// Polls `probe` every 3 s until it returns something truthy (returned) or `deadline`
// (epoch ms) passes (null).
export async function waitFor(page, deadline, probe) {
  while (Date.now() < deadline) {
    const value = await probe();
    if (value) return value;
    await page.waitForTimeout(3000);
  }
  return null;
}

export function runUrl(baseUrl, dag, runId) {
  return `${baseUrl}/api/v2/dags/${dag}/dagRuns/${encodeURIComponent(runId)}`;
}

// The run's final state, or 'timeout' when it has none by `deadline`.
export async function finalRunState(page, baseUrl, dag, runId, deadline) {
  return (await waitFor(page, deadline, async () => {
    const { state } = await api(page, 'GET', runUrl(baseUrl, dag, runId));
    return FINISHED.has(state) ? state : null;
  })) || 'timeout';
}

// Triggers `dag` from its Trigger form with `params` ({name: text}) filled in, unpausing
// it on the way; returns the new run's id.
export async function triggerFromForm(page, baseUrl, dag, params) {
  await page.goto(`${baseUrl}/dags/${dag}`);
  await page.getByRole('button', { name: /^Trigger/ }).first().click();
  const dialog = page.getByRole('dialog');
  for (const [name, value] of Object.entries(params)) {
    await dialog.locator(`[name="element_${name}"]`).fill(value);
  }
  const unpause = dialog.getByText(`Unpause ${dag} on trigger`);
  if (await unpause.count()) await unpause.check();
  const runsCreated = page.waitForResponse(
    (response) => response.request().method() === 'POST'
      && response.url().includes(`/api/v2/dags/${dag}/dagRuns`));
  await dialog.getByRole('button', { name: /^Trigger$/ }).click();
  const response = await runsCreated;
  if (!response.ok()) throw new Error(`trigger failed: ${response.status()} ${await response.text()}`);
  return (await response.json()).dag_run_id;
}

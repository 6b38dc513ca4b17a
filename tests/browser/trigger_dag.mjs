// Triggers a DAG from the Airflow UI in headless Chromium, waits for the run to finish
// and keeps a screenshot of the run's page.
//
//   node trigger_dag.mjs --url http://127.0.0.1:8300 --dag msd_local_pipeline \
//     --param generated_songs=150 --screenshot out.png [--timeout-seconds 600]
//
// Prints one JSON line: {"run_id": ..., "state": ..., "screenshot": ...}; exits 0 when
// the run succeeded, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { finalRunState, reportFailure, triggerFromForm, withPage } from './chromium.mjs';

function parseArgs(argv) {
  const args = { params: {}, timeoutSeconds: 600 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--url') args.url = value.replace(/\/$/, '');
    else if (flag === '--dag') args.dag = value;
    else if (flag === '--screenshot') args.screenshot = value;
    else if (flag === '--timeout-seconds') args.timeoutSeconds = Number(value);
    else if (flag === '--param') {
      const [name, ...rest] = value.split('=');
      args.params[name] = rest.join('=');
    } else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.url || !args.dag || !args.screenshot) {
    throw new Error('--url, --dag and --screenshot are required');
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  await withPage({ width: 1400, height: 900 }, async (page) => {
    const runId = await triggerFromForm(page, args.url, args.dag, args.params);
    const state = await finalRunState(page, args.url, args.dag, runId,
      Date.now() + args.timeoutSeconds * 1000);
    await page.goto(`${args.url}/dags/${args.dag}/runs/${encodeURIComponent(runId)}`);
    await page.getByText(/^(success|failed)$/i).first().waitFor({ timeout: 30000 }).catch(() => {});
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(JSON.stringify({ run_id: runId, state, screenshot: args.screenshot }));
    process.exitCode = state === 'success' ? 0 : 1;
  });
}

main().catch(reportFailure);

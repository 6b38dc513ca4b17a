// Approves a promotion in the Airflow UI as a person would: the Approve button of the
// approval task's Required Actions tab.
//
//   node approve_promotion.mjs --url http://127.0.0.1:8300 --dag msd_local_pipeline \
//     --task model.approve [--param generated_songs=150 ...] --screenshot out.png \
//     [--timeout-seconds 900]
//
// Triggers the DAG from its form with the --param values filled in (the defaults for the
// rest), waits until the run's approval task awaits input, clicks Approve on that task's
// Required Actions tab, waits for the run to end and keeps a screenshot of the answered
// action. Prints one JSON line: {run_id,
// state, response (the UI's answer: chosen_options, responded_by), task_states,
// screenshot}; exits 0 when the run succeeded, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';
import {
  api, FINISHED, finalRunState, reportFailure, runUrl, triggerFromForm, waitFor, withPage,
} from './chromium.mjs';

function parseArgs(argv) {
  const args = { params: {}, timeoutSeconds: 900 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--url') args.url = value.replace(/\/$/, '');
    else if (flag === '--dag') args.dag = value;
    else if (flag === '--task') args.task = value;
    else if (flag === '--screenshot') args.screenshot = value;
    else if (flag === '--timeout-seconds') args.timeoutSeconds = Number(value);
    else if (flag === '--param') {
      const [name, ...rest] = value.split('=');
      args.params[name] = rest.join('=');
    } else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.url || !args.dag || !args.task || !args.screenshot) {
    throw new Error('--url, --dag, --task and --screenshot are required');
  }
  return args;
}

async function waitForAwaitingInput(page, args, runId, deadline) {
  const run = runUrl(args.url, args.dag, runId);
  const awaiting = await waitFor(page, deadline, async () => {
    const task = await api(page, 'GET', `${run}/taskInstances/${args.task}`);
    if (task.state === 'awaiting_input') return true;
    const { state } = await api(page, 'GET', run);
    if (FINISHED.has(state)) throw new Error(`run ${runId} ended ${state} before ${args.task} awaited input`);
    return false;
  });
  if (!awaiting) throw new Error(`${args.task} of run ${runId} did not await input in time`);
}

function requiredActionsPage(args, runId) {
  const run = `${args.url}/dags/${args.dag}/runs/${encodeURIComponent(runId)}`;
  return `${run}/tasks/${args.task}/required_actions`;
}

// Clicks Approve; returns the answer the UI sent and the server stored.
async function approveInUi(page, args, runId) {
  await page.goto(requiredActionsPage(args, runId));
  const answered = page.waitForResponse(
    (response) => response.request().method() === 'PATCH'
      && response.url().includes(`/taskInstances/${args.task}/`)
      && response.url().includes('/hitlDetails'));
  await page.getByRole('button', { name: 'Approve', exact: true }).click();
  const response = await answered;
  if (!response.ok()) throw new Error(`approval failed: ${response.status()} ${await response.text()}`);
  return response.json();
}

async function taskStates(page, args, runId) {
  const { task_instances: tasks } = await api(
    page, 'GET', `${runUrl(args.url, args.dag, runId)}/taskInstances?limit=100`);
  return Object.fromEntries(tasks.map((task) => [task.task_id, task.state]));
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + args.timeoutSeconds * 1000;
  await withPage({ width: 1400, height: 1000 }, async (page) => {
    const runId = await triggerFromForm(page, args.url, args.dag, args.params);
    await waitForAwaitingInput(page, args, runId, deadline);
    const response = await approveInUi(page, args, runId);
    const state = await finalRunState(page, args.url, args.dag, runId, deadline);

    await page.goto(requiredActionsPage(args, runId));
    await page.getByText('Response received at').first().waitFor({ timeout: 30000 });
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(JSON.stringify({
      run_id: runId, state, response, task_states: await taskStates(page, args, runId),
      screenshot: args.screenshot,
    }));
    process.exitCode = state === 'success' ? 0 : 1;
  });
}

main().catch(reportFailure);

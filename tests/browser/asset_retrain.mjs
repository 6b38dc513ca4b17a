// Ingest-only run → `songs` asset event → asset-triggered retraining, seen in the UI.
//
//   node asset_retrain.mjs --url http://127.0.0.1:8300 --ingest-dag msd_local_pipeline \
//     --retrain-dag msd_retrain_local --conf '{"train": false}' --screenshot out.png
//
// Unpauses both DAGs, triggers the ingest DAG with --conf through the REST API of
// the logged-in UI session, waits for it, waits for the asset-triggered retrain run that
// consumed its `songs` event, then opens Assets → songs and waits for the retrain DAG to
// show there. Prints one JSON line: {ingest_run_id, ingest_state, retrain_run_id,
// retrain_state, event, screenshot}; exits 0 when both runs succeeded and the Assets
// view shows them, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { api, finalRunState, reportFailure, waitFor, withPage } from './chromium.mjs';

function parseArgs(argv) {
  const args = { conf: {}, timeoutSeconds: 900 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--url') args.url = value.replace(/\/$/, '');
    else if (flag === '--ingest-dag') args.ingestDag = value;
    else if (flag === '--retrain-dag') args.retrainDag = value;
    else if (flag === '--conf') args.conf = JSON.parse(value);
    else if (flag === '--screenshot') args.screenshot = value;
    else if (flag === '--timeout-seconds') args.timeoutSeconds = Number(value);
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.url || !args.ingestDag || !args.retrainDag || !args.screenshot) {
    throw new Error('--url, --ingest-dag, --retrain-dag and --screenshot are required');
  }
  return args;
}

async function songsEventOf(page, args, ingestRunId, deadline) {
  return waitFor(page, deadline, async () => {
    const events = (await api(page, 'GET', `${args.url}/api/v2/assets/events?source_dag_id=${args.ingestDag}&limit=50`)).asset_events;
    const event = events.find((item) => item.source_run_id === ingestRunId);
    const runs = (event?.created_dagruns || []).filter((run) => run.dag_id === args.retrainDag);
    return runs.length ? { event, retrainRunId: runs[0].run_id } : null;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + args.timeoutSeconds * 1000;
  await withPage({ width: 1400, height: 1000 }, async (page) => {
    await page.goto(`${args.url}/dags/${args.retrainDag}`);  // the session's token
    await page.waitForLoadState('networkidle');
    for (const dag of [args.ingestDag, args.retrainDag]) {
      await api(page, 'PATCH', `${args.url}/api/v2/dags/${dag}`, { is_paused: false });
    }
    const ingest = await api(page, 'POST', `${args.url}/api/v2/dags/${args.ingestDag}/dagRuns`,
      { logical_date: null, conf: args.conf });
    const ingestState = await finalRunState(
      page, args.url, args.ingestDag, ingest.dag_run_id, deadline);
    const found = ingestState === 'success' ? await songsEventOf(page, args, ingest.dag_run_id, deadline) : null;
    const retrainState = found
      ? await finalRunState(page, args.url, args.retrainDag, found.retrainRunId, deadline) : 'not triggered';

    await page.goto(`${args.url}/assets`);
    await page.getByRole('link', { name: 'songs', exact: true }).first().click();
    const shown = await page.getByText(args.retrainDag).first()
      .waitFor({ timeout: 60000 }).then(() => true, () => false);
    fs.mkdirSync(path.dirname(args.screenshot), { recursive: true });
    await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(JSON.stringify({
      ingest_run_id: ingest.dag_run_id, ingest_state: ingestState,
      retrain_run_id: found?.retrainRunId ?? null, retrain_state: retrainState,
      event: found?.event ?? null, assets_view_shows_retrain: shown, screenshot: args.screenshot,
    }));
    process.exitCode = ingestState === 'success' && retrainState === 'success' && shown ? 0 : 1;
  });
}

main().catch(reportFailure);

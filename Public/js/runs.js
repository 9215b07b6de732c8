// A worker's runs (its incarnations, each named by an epoch) as the pages show them: the run status
// with its label and colour (the colour comes from the stylesheet, by `data-status`), start times,
// durations and the runs list of the gateway.

import { timestampMillis } from './levels.js';
import { apiURL } from './urls.js';

/** The statuses a run can have (docs/PROTOCOL.md, "Run status"). */
export const STATUSES = ['running', 'succeeded', 'failed', 'stopped', 'idle', 'interrupted'];

const STATUS_MEANING = {
  running: 'being published',
  succeeded: 'its program exited with status 0',
  failed: 'its program failed',
  stopped: 'stopped by its publisher',
  idle: 'stopped: its publisher went away and did not come back',
  interrupted: 'the gateway stopped while the run was open',
};

/** `failed (exit 1)`, `succeeded`, `running`, …; `''` without a status (an older gateway). */
export function statusLabel(run) {
  const status = run?.status;
  if (!status) return '';
  if (status === 'failed' && run.exit_code !== null && run.exit_code !== undefined) return `failed (exit ${run.exit_code})`;
  return status;
}

/** A sentence for tooltips: the status, what it means, and why the run stopped. */
export function statusTitle(run) {
  if (!run?.status) return '';
  const parts = [`${statusLabel(run)}: ${STATUS_MEANING[run.status] ?? run.status}`];
  if (run.reason && run.status !== 'running') parts.push(`(${run.reason})`);
  return parts.join(' ');
}

/** Shows the status of `run` in `element` (text, `data-status` for the colour, a tooltip). */
export function showStatus(element, run) {
  element.textContent = statusLabel(run);
  element.dataset.status = run?.status ?? '';
  element.title = statusTitle(run);
}

const pad = (n) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `Nov 30 03:02:11` in local time (with the year when it is not this year); `''` when unknown. */
export function formatWhen(iso) {
  const millis = timestampMillis(iso);
  if (Number.isNaN(millis)) return '';
  const d = new Date(millis);
  const year = d.getFullYear() === new Date().getFullYear() ? '' : ` ${d.getFullYear()}`;
  return `${MONTHS[d.getMonth()]} ${d.getDate()}${year} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `850 ms`, `12 s`, `4 min 2 s`, `3 h 5 min`, `2 d 4 h`. */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** How long the run lasted (or has been running, by the local clock corrected by `clockOffset`). */
export function runDuration(run, clockOffset = 0) {
  const start = timestampMillis(run.started_at);
  const stop = run.stopped_at ? timestampMillis(run.stopped_at) : Date.now() + clockOffset;
  return formatDuration(stop - start);
}

/** `20,000 records`. */
export function formatRecords(n) {
  const count = Number(n) || 0;
  return `${count.toLocaleString('en-US')} record${count === 1 ? '' : 's'}`;
}

/** Whether the gateway keeps runs: its `Worker` objects carry the run `status`. */
export function hasRuns(worker) {
  return Boolean(worker && typeof worker === 'object' && 'status' in worker);
}

/** The worker's runs, newest first (`GET /api/workers/ID/runs`); throws with the status on refusal. */
export async function fetchRuns(workerId) {
  const response = await fetch(apiURL(`api/workers/${workerId}/runs`), { cache: 'no-store' });
  if (!response.ok) {
    const error = new Error(`the gateway answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  const body = await response.json();
  return Array.isArray(body.runs) ? body.runs : [];
}

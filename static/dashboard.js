// The admin task dashboard: recent tasks, the last hour per task, schedules and consumers, redrawn
// from the admin API every few seconds. Task data goes into the page as text only, never as HTML.
// A module: its names stay out of the global scope sprig.js shares; api() is sprig.js's.

const REFRESH_MS = 3000;

const root = document.querySelector('[data-dashboard]');
const filters = root.querySelector('[data-filters]');
const pager = root.querySelector('[data-pager]');
const retryable = new Set(root.dataset.retryable.split(' '));
const revocable = new Set(root.dataset.revocable.split(' '));
const shown = {};  // per table body, the JSON of what it shows
let page = 1;
let timer = 0;
let generation = 0;  // of refreshes: only the newest one draws
let typing = 0;

const TIME = new Intl.DateTimeFormat(undefined,
  {hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'});
const DAY = new Intl.DateTimeFormat(undefined, {month: 'short', day: 'numeric'});
const FULL = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'medium'});

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// Times: ISO UTC from the API, shown in the browser's time zone; the date only when not today.
function when(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  const today = date.toDateString() === new Date().toDateString();
  return today ? TIME.format(date) : `${DAY.format(date)} ${TIME.format(date)}`;
}

function timeCell(iso) {
  return el('td', {title: iso ? FULL.format(new Date(iso)) : null}, when(iso));
}

function seconds(value) {
  if (value === null || value === undefined) return '–';
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  const minutes = Math.floor(value / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(value % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function clipped(text, className = 'clip') {
  return el('span', {class: className, title: text || null}, text || '');
}

function taskRow(task) {
  const actions = el('td', {class: 'actions'});
  if (task.retry) actions.append(el('button', {type: 'button', 'data-action': 'retry'}, 'Retry'));
  else if (retryable.has(task.state)) actions.append(el('span', {class: 'no-retry', title: task.no_retry}, 'no retry'));
  if (revocable.has(task.state)) actions.append(el('button', {type: 'button', 'data-action': 'revoke'}, 'Revoke'));
  const ran = task.started_at && task.finished_at
    ? (Date.parse(task.finished_at) - Date.parse(task.started_at)) / 1000 : null;
  return el('tr', {'data-id': task.id, 'data-name': task.name, 'data-state': task.state},
    el('td', {}, el('span', {class: `badge state-${task.state}`}, task.state)),
    el('td', {title: `id ${task.id}`}, el('a', {href: `/admin/tasks/${encodeURIComponent(task.id)}`}, task.name)),
    el('td', {}, clipped(task.args, 'clip code')),
    timeCell(task.created_at),
    el('td', {class: 'num'}, seconds(ran)),
    el('td', {class: 'num'}, String(task.retries)),
    el('td', {class: 'error'}, clipped(task.error)),
    actions);
}

function statRow(stat) {
  return el('tr', {},
    el('td', {}, stat.name),
    el('td', {class: 'num'}, String(stat.finished)),
    el('td', {class: stat.failed ? 'num bad' : 'num', title: `${stat.failed} failed or lost`},
      `${Math.round(stat.error_rate * 100)} %`),
    el('td', {class: 'num'}, seconds(stat.avg_seconds)));
}

function scheduleRow(schedule) {
  return el('tr', {},
    el('td', {}, schedule.name),
    el('td', {}, schedule.schedule),
    timeCell(schedule.last_run),
    timeCell(schedule.next_run));
}

function consumerRow(consumer) {
  const id = el('td', {}, clipped(consumer.id));
  if (consumer.leader) id.append(el('span', {class: 'badge leader', title: 'runs the schedules'}, 'leader'));
  return el('tr', {},
    id,
    el('td', {}, consumer.host),
    el('td', {class: 'num'}, String(consumer.pid)),
    el('td', {class: 'num'}, String(consumer.workers)),
    el('td', {class: 'num'}, `${consumer.heartbeat_age.toFixed(1)} s ago`));
}

function draw(name, items, row, empty) {
  const signature = JSON.stringify([items, empty]);
  // Unchanged rows stay as they are, so a button under the pointer is not replaced mid-click.
  if (shown[name] === signature) return;
  shown[name] = signature;
  const body = root.querySelector(`[data-body="${name}"]`);
  const columns = body.closest('table').querySelectorAll('thead th').length;
  const rows = items.length ? items.map(row) : [el('tr', {}, el('td', {class: 'empty', colspan: columns}, empty))];
  body.replaceChildren(...rows);
}

function drawPager(list) {
  const pages = Math.max(1, Math.ceil(list.count / list.size));
  const first = (list.page - 1) * list.size;
  pager.querySelector('[data-range]').textContent = list.items.length
    ? `${first + 1}–${first + list.items.length} of ${list.count}` : `${list.count} tasks`;
  pager.querySelector('[data-step="-1"]').disabled = list.page <= 1;
  pager.querySelector('[data-step="1"]').disabled = list.page >= pages;
}

function filtered() {
  return Boolean(filters.elements.state.value || filters.elements.name.value.trim() || filters.elements.q.value.trim());
}

function note(text, failed = false) {
  const slot = root.querySelector('[data-note]');
  slot.textContent = text;
  slot.classList.toggle('error', failed);
}

function message(text, failed = false) {
  const slot = root.querySelector('[data-message]');
  slot.textContent = text;
  slot.classList.toggle('error', failed);
}

function query() {
  const params = new URLSearchParams();
  const state = filters.elements.state.value;
  const name = filters.elements.name.value.trim();
  const words = filters.elements.q.value.trim();
  if (state) params.set('state', state);
  if (name) params.set('name', name);
  if (words) params.set('q', words);
  if (page > 1) params.set('page', page);
  return String(params);
}

async function load(path) {
  const answer = await api('GET', path);
  if (answer.code !== 100) throw new Error(answer.msg);
  return answer.result;
}

// The charts are images drawn by the server; every CHART_MS they are drawn anew.
const CHART_MS = 30000;
setInterval(() => {
  for (const image of root.querySelectorAll('img[data-chart]')) image.src = `${image.src.split('?')[0]}?t=${Date.now()}`;
}, CHART_MS);

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  let answers;
  try {
    answers = await Promise.all([
      load(`/api/v1/admin/tasks?${query()}`), load('/api/v1/admin/tasks/stats'), load('/api/v1/admin/queue')]);
  } catch (error) {
    answers = error;
  }
  if (mine !== generation) return;  // the filters changed meanwhile: the newer refresh draws
  if (answers instanceof Error) {
    // The last good data stays on the page, under a note that says it is no longer fresh.
    note(`refresh failed at ${TIME.format(new Date())}: ${answers.message}`, true);
  } else {
    const [list, stats, queue] = answers;
    draw('tasks', list.items, taskRow, filtered() ? 'No task matches these filters.' : 'No tasks yet.');
    drawPager(list);
    draw('stats', stats, statRow, 'No task finished in the last hour.');
    draw('schedules', queue.periodic, scheduleRow, 'No periodic tasks.');
    draw('consumers', queue.consumers.map(c => ({...c, leader: c.id === queue.leader})), consumerRow,
      'No consumer is running: queued tasks wait.');
    root.querySelector('[data-count="pending"]').textContent = queue.pending;
    root.querySelector('[data-count="scheduled"]').textContent = queue.scheduled;
    note(`updated ${TIME.format(new Date())}`);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// Filters and page live in the address too: a reload or a shared link shows the same view.
function changed() {
  const search = query();
  history.replaceState(null, '', search ? `?${search}` : location.pathname);
  refresh();
}

const start = new URLSearchParams(location.search);
filters.elements.state.value = start.get('state') || '';
filters.elements.name.value = start.get('name') || '';
filters.elements.q.value = start.get('q') || '';
page = Math.max(1, Number.parseInt(start.get('page'), 10) || 1);

filters.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => { page = 1; changed(); }, 300);  // a pause in typing, not every key
});
filters.addEventListener('submit', event => {
  event.preventDefault();
  clearTimeout(typing);
  page = 1;
  changed();
});
pager.addEventListener('click', event => {
  const button = event.target.closest('button[data-step]');
  if (!button) return;
  page = Math.max(1, page + Number(button.dataset.step));
  changed();
});

root.querySelector('[data-body="tasks"]').addEventListener('click', async event => {
  const button = event.target.closest('button[data-action]');
  if (!button) return;
  const row = button.closest('tr');
  const {action} = button.dataset;
  button.disabled = true;
  let answer;
  try {
    answer = await api('POST', `/api/v1/admin/tasks/${encodeURIComponent(row.dataset.id)}/${action}`);
  } catch (error) {
    answer = {msg: 'Network error: check your connection and try again.'};
  }
  if (answer.code !== 100) message(answer.msg, true);
  else if (action === 'retry') message(`${row.dataset.name} queued again as task ${answer.task_id}.`);
  else message(`${row.dataset.name} revoked.`);
  button.disabled = false;
  refresh();
});

refresh();
